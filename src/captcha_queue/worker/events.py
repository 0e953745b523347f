"""What a worker tells the outside while it runs: a small observer protocol.

``metrics.WorkerMetrics`` implements it (Prometheus); ``NullEvents`` ignores everything. Every hook is
synchronous, cheap and must not raise: the runtime calls them on its hot path.
"""

from __future__ import annotations

from typing import Protocol

from ..models import Claim, Result

__all__ = ["NullEvents", "WorkerEvents"]


class WorkerEvents(Protocol):
    def task_started(self, claim: Claim | None = None) -> None:
        """A task was claimed and is about to run."""

    def task_finished(self, result: Result) -> None:
        """A final result was written (success, error, expired)."""

    def retry(self, reason: str | BaseException = "transient") -> None:
        """An attempt ended in a scheduled retry (``reason``: the error, or "busy"/"stalled")."""

    def solver_request(self, endpoint: str, code: str = "OK") -> None:
        """One request to the solver: endpoint "in" or "res", the code it answered."""

    def set_in_flight(self, n: int) -> None:
        """Tasks this process holds right now."""

    def set_slots(self, used: int, limit: int | None) -> None:
        """Fleet-wide solver slots in use and the effective limit (None: unlimited)."""

    def set_paused(self, paused: bool) -> None:
        """The fleet-wide (operator's) pause as this process sees it."""

    def set_account_paused(self, paused: bool) -> None:
        """The pause of this process's solver account (account error, busy that did not clear)."""

    def account_paused(self, code: str) -> None:
        """This process paused its account, for ``code`` (the service's answer)."""

    def set_limit_unknown(self, unknown: bool) -> None:
        """True while the fleet limit is unknown (the account has not answered): no solve is sent."""

    def report(self, account: str, verdict: str, outcome: str) -> None:
        """A verdict on an answer ("good" or "bad") was sent to ``account``: ``outcome`` "sent" or "error"."""


class NullEvents:
    """Observes nothing."""

    def task_started(self, claim: Claim | None = None) -> None:
        pass

    def task_finished(self, result: Result) -> None:
        pass

    def retry(self, reason: str | BaseException = "transient") -> None:
        pass

    def solver_request(self, endpoint: str, code: str = "OK") -> None:
        pass

    def set_in_flight(self, n: int) -> None:
        pass

    def set_slots(self, used: int, limit: int | None) -> None:
        pass

    def set_paused(self, paused: bool) -> None:
        pass

    def set_account_paused(self, paused: bool) -> None:
        pass

    def account_paused(self, code: str) -> None:
        pass

    def set_limit_unknown(self, unknown: bool) -> None:
        pass

    def report(self, account: str, verdict: str, outcome: str) -> None:
        pass

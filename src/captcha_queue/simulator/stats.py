"""What the simulator counts, served as ``GET /stats``.

A *task key* identifies the queue task behind a solver submission, so tests can find duplicate
submissions: the ``x_task`` param when the submit carries one, else its ``pageurl``. Submits with
neither are counted only in the totals.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["SimStats", "task_key_of"]


def task_key_of(params: dict[str, str]) -> str | None:
    return params.get("x_task") or params.get("pageurl") or None


class SimStats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: Counter[str] = Counter()  # per endpoint: in, res
        self.submit_requests = 0
        self.submits = 0  # accepted tasks
        self.polls = 0  # task ids polled (a multi-id poll counts each id)
        self.poll_requests = 0
        self.codes: Counter[str] = Counter()  # every code answered: OK, CAPCHA_NOT_READY, ERROR_...
        self.faults: Counter[str] = Counter()
        self.submits_by_task: Counter[str] = Counter()
        self.methods: Counter[str] = Counter()  # accepted tasks per variant
        self.solved = 0
        self.unsolvable = 0
        self.reports: Counter[str] = Counter()
        self.refunds = 0  # tasks whose price came back (bad reports, unsolvable)
        self.pingbacks: Counter[str] = Counter()
        self.max_in_flight = 0
        #: What was in flight at the newest maximum (engine._note_peak), for a checker to name.
        self.peak: dict[str, Any] = {}

    def accepted(self, variant: str, task_key: str | None) -> None:
        self.submits += 1
        self.methods[variant] += 1
        if task_key is not None:
            self.submits_by_task[task_key] += 1

    def snapshot(self, *, in_flight: int, accounts: dict[str, Any], banned_ips: int) -> dict[str, Any]:
        return {
            "submits": self.submits,
            "submit_requests": self.submit_requests,
            "polls": self.polls,
            "poll_requests": self.poll_requests,
            "requests": dict(self.requests),
            "codes": dict(self.codes),
            "faults": dict(self.faults),
            "methods": dict(self.methods),
            "submits_by_task": dict(self.submits_by_task),
            "duplicate_submits": {k: n for k, n in self.submits_by_task.items() if n > 1},
            "solved": self.solved,
            "unsolvable": self.unsolvable,
            "reports": dict(self.reports),
            "refunds": self.refunds,
            "pingbacks": dict(self.pingbacks),
            "in_flight": in_flight,
            "max_in_flight": self.max_in_flight,
            "peak": self.peak,
            "accounts": accounts,
            "banned_ips": banned_ips,
        }

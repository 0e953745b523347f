"""The Solver interface: public methods do the shared bookkeeping and call small abstract ``_methods``.

Bookkeeping done here, once for every backend: method validation and alias normalisation (through
``methods.normalize``), the variant of each task (poll cadence, answer shape), counters, per-id error
isolation in ``poll_many``, best-effort reports and the async-context lifecycle.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

from ..errors import ConfigError, InvalidTask, SolverError, TaskRejected
from ..models import AccountInfo, Solution
from ..protocol.methods import MethodSpec, ParamValue, normalize, spec_for

__all__ = ["PollItem", "PollOutcome", "Solver", "account_ref", "key_fingerprint"]

log = logging.getLogger("captcha_queue.solvers")

#: (remote id, method, params) as the worker holds them for a task it submitted.
PollItem = tuple[str, str, Mapping[str, ParamValue]]
PollOutcome = Solution | None | SolverError


def key_fingerprint(api_key: str) -> str:
    """A short, non-reversible name for an API key (12 hex digits of an HMAC-SHA256 of it).

    It tells accounts apart in Redis, logs and the CLI (whose key caused a pause) without the key.
    """
    return hmac.new(b"captcha-queue account", api_key.encode(), hashlib.sha256).hexdigest()[:12]


def account_ref(account: str, fingerprint: str | None) -> str:
    """The account as fleet pauses know it: ``<account>/<key fingerprint>``, the name alone without a
    key, so two keys configured under one name are paused apart."""
    return account if fingerprint is None else f"{account}/{fingerprint}"


class Solver(ABC):
    """An async client of a solving service.

    ``account`` names the solver account for fleet-wide limits; it is configuration, never derived
    from a key. ``time_scale`` multiplies every wait the solver suggests (first poll, interval,
    ``retry_after_s``, ``pause_s``), so tests and benchmarks run against a time-scaled simulator.
    """

    kind: str = "solver"
    #: The provider profile's name (``captchaai``, ``2captcha``, ``capsolver``...; ``instant`` for the
    #: in-process solver): what account routing and refunds know the service by.
    provider: str = "solver"
    #: ``key_fingerprint`` of the API key (None: the backend has no key).
    key_fingerprint: str | None = None
    #: True when the service tells no thread limit (no ``threadsinfo``): a fleet needs a configured one.
    requires_limit: bool = False

    def __init__(
        self, *, account: str = "default", time_scale: float = 1.0, allow_unknown_methods: bool = False
    ) -> None:
        if time_scale <= 0:
            raise ConfigError("time_scale must be positive")
        self.account = account
        self.time_scale = time_scale
        self.allow_unknown_methods = allow_unknown_methods
        self.counters: Counter[str] = Counter()
        self._closed = False

    @property
    def account_ref(self) -> str:
        """This solver's account as fleet pauses know it (see ``account_ref``)."""
        return account_ref(self.account, self.key_fingerprint)

    # -- the interface ---------------------------------------------------------------------------

    async def submit(self, method: str, params: Mapping[str, ParamValue]) -> str:
        """Send a task to the service; returns its remote id.

        A task that fails validation raises TaskRejected (code INVALID_TASK): the producer validates
        too, so this only happens when the table changed between versions.
        """
        self._check_open()
        try:
            wire, clean = normalize(method, params, allow_unknown=self.allow_unknown_methods)
        except InvalidTask as exc:
            raise TaskRejected("INVALID_TASK", str(exc)) from exc
        spec = spec_for(wire, clean)
        if spec.known and not self._supports(spec):
            raise TaskRejected(
                "ERROR_TASK_NOT_SUPPORTED",
                f"the {self.provider} provider does not solve {spec.name} tasks",
            )
        self.counters["submits"] += 1
        try:
            remote_id = await self._submit(spec, clean)
        except SolverError as exc:
            self.counters[f"error:{exc.code}"] += 1
            raise
        self.counters["accepted"] += 1
        return remote_id

    def supports(self, method: str, params: Mapping[str, ParamValue] | None = None) -> bool:
        """Whether this solver's service solves ``method`` (with ``params``: its variant), for routing."""
        try:
            wire, clean = normalize(method, params or {}, allow_unknown=self.allow_unknown_methods)
        except InvalidTask:
            wire, clean = method, dict(params or {})
        spec = spec_for(wire, clean)
        return self._supports(spec) if spec.known else self.allow_unknown_methods

    async def poll(
        self, remote_id: str, method: str | None = None, params: Mapping[str, ParamValue] | None = None
    ) -> Solution | None:
        """The answer of a submitted task, or None while it is not ready.

        ``method`` / ``params`` (as submitted) tell where the answer lives; without them the answer is
        read as plain text from ``request``. A TransientError means this poll failed and the remote task
        may still be solving: poll again later.
        """
        self._check_open()
        self.counters["polls"] += 1
        try:
            return await self._poll(str(remote_id), self._spec(method, params))
        except SolverError as exc:
            self.counters[f"error:{exc.code}"] += 1
            raise

    async def poll_many(self, items: Sequence[PollItem]) -> dict[str, PollOutcome]:
        """Poll several tasks at once; per-id errors are returned in the dict, never raised."""
        self._check_open()
        if not items:
            return {}
        self.counters["polls"] += len(items)
        pairs = [(str(remote_id), self._spec(method, params)) for remote_id, method, params in items]
        outcomes = await self._poll_many(pairs)
        for outcome in outcomes.values():
            if isinstance(outcome, SolverError):
                self.counters[f"error:{outcome.code}"] += 1
        return outcomes

    async def report(
        self,
        remote_id: str,
        correct: bool,
        method: str | None = None,
        params: Mapping[str, ParamValue] | None = None,
    ) -> None:
        """Tell the service whether an answer worked (a bad one is refunded where the service does).
        Best effort: failures are logged, not raised.

        ``method`` / ``params`` (as submitted) pick the report action where the service has one per
        kind of task (Anti-Captcha: image, reCAPTCHA, hCaptcha); without them the solver uses what it
        remembers of its own submits, else a reCAPTCHA report.
        """
        self._check_open()
        self.counters["reports_good" if correct else "reports_bad"] += 1
        spec = self._spec(method, params) if method else None
        try:
            await self._report_spec(str(remote_id), correct, spec)
        except SolverError as exc:
            log.info("report on task %s not recorded: %s", remote_id, exc)

    async def account_info(self) -> AccountInfo:
        """Threads, working threads and (where the service tells) the balance."""
        self._check_open()
        return await self._account_info()

    def poll_schedule(
        self, method: str | None, params: Mapping[str, ParamValue] | None = None
    ) -> tuple[float, float]:
        """(first poll delay, poll interval) in seconds for a task, already time-scaled."""
        first_s, interval_s = self._poll_times(self._spec(method, params))
        return first_s * self.time_scale, interval_s * self.time_scale

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} provider={self.provider!r} account={self.account!r}>"

    # -- what a backend implements ---------------------------------------------------------------

    @abstractmethod
    async def _submit(self, spec: MethodSpec, params: dict[str, ParamValue]) -> str: ...

    @abstractmethod
    async def _poll(self, remote_id: str, spec: MethodSpec) -> Solution | None: ...

    async def _poll_many(self, items: Sequence[tuple[str, MethodSpec]]) -> dict[str, PollOutcome]:
        """Default: concurrent single polls, errors captured per id."""

        async def one(remote_id: str, spec: MethodSpec) -> PollOutcome:
            try:
                return await self._poll(remote_id, spec)
            except SolverError as exc:
                return exc

        results = await asyncio.gather(*(one(remote_id, spec) for remote_id, spec in items))
        return {remote_id: outcome for (remote_id, _), outcome in zip(items, results, strict=True)}

    @abstractmethod
    async def _report(self, remote_id: str, correct: bool) -> None: ...

    async def _report_spec(self, remote_id: str, correct: bool, spec: MethodSpec | None) -> None:
        """A report knowing the task's variant when the caller gave it (default: ``_report``)."""
        await self._report(remote_id, correct)

    @abstractmethod
    async def _account_info(self) -> AccountInfo: ...

    async def _aclose(self) -> None:
        return None

    def _supports(self, spec: MethodSpec) -> bool:
        """Whether the service solves this variant (default: every known one)."""
        return True

    def _poll_times(self, spec: MethodSpec) -> tuple[float, float]:
        """(first poll delay, poll interval) in unscaled seconds (default: the method's own)."""
        return spec.first_poll_s, spec.poll_interval_s

    # -- helpers ---------------------------------------------------------------------------------

    def _spec(self, method: str | None, params: Mapping[str, ParamValue] | None) -> MethodSpec:
        if not method:
            return MethodSpec(name="unknown", wire_method="", known=False)
        try:
            wire, clean = normalize(method, params or {}, allow_unknown=True)
        except InvalidTask:
            # Polling must not fail on validation: read the answer by the variant the name implies.
            return spec_for(method, params or {})
        return spec_for(wire, clean)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")

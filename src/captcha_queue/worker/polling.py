"""One timer structure per process for every remote id's next poll.

Each task that waits for an answer registers its remote id once (``wait_for``); a single heap keyed by
the monotonic time of the next poll decides when each id is polled: the method's first-poll delay
after the submit, then its interval. Ids that fall due together (within ``coalesce_s``) go out together
through ``solver.poll_many`` in batches, so 2,000 tasks in flight cost one sleeping loop and a few
batched requests per interval, not 2,000 timers.

A failed poll (a 5xx, a timeout, a 429) says nothing about the remote task: it is polled again after a
backoff, and only a run of failures (or a solve that outlives ``solve_timeout_s``) gives up with a
``TransientError``. Answers that end the solve (``Unsolvable``, ``TaskRejected``, ``AccountError``)
are raised to the waiting task.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import CaptchaQueueError, SolverBusy, SolverError, TransientError
from ..models import Solution
from ..protocol.methods import ParamValue
from ..solvers.base import PollItem, PollOutcome
from .retry import Backoff

__all__ = ["PollConfig", "PollScheduler", "Poller"]

log = logging.getLogger("captcha_queue.worker.polling")

#: What the scheduler needs from a solver: ``Solver.poll_many``.
Poller = Callable[[Sequence[PollItem]], Awaitable[Mapping[str, PollOutcome]]]


@dataclass(frozen=True)
class PollConfig:
    batch_max: int = 100  # ids per poll_many call
    max_batches_in_flight: int = 16  # concurrent poll_many calls; more due ids wait their turn
    coalesce_s: float = 0.02  # ids due within this window of each other go out together
    max_failures: int = 8  # consecutive failed polls of one id before giving up
    failure_backoff: Backoff = field(default_factory=lambda: Backoff(base_s=1.0, cap_s=15.0))
    solve_timeout_s: float = 600.0  # a remote solve that takes longer is given up (then retried)

    def scaled(self, time_scale: float) -> PollConfig:
        return PollConfig(
            batch_max=self.batch_max,
            max_batches_in_flight=self.max_batches_in_flight,
            coalesce_s=min(self.coalesce_s, max(0.001, self.coalesce_s * time_scale * 10)),
            max_failures=self.max_failures,
            failure_backoff=self.failure_backoff.scaled(time_scale),
            solve_timeout_s=self.solve_timeout_s * time_scale,
        )


class _Entry:
    __slots__ = ("deadline", "failures", "future", "interval_s", "item")

    def __init__(
        self, item: PollItem, interval_s: float, deadline: float, future: asyncio.Future[Solution]
    ) -> None:
        self.item = item
        self.interval_s = interval_s
        self.deadline = deadline
        self.failures = 0
        self.future = future


class PollScheduler:
    """The process-wide poll timer. ``run()`` is a background task; tasks call ``wait_for``."""

    def __init__(
        self,
        poll_many: Poller,
        config: PollConfig | None = None,
        *,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self._poll_many = poll_many
        self.config = config or PollConfig()
        self._on_outcome = on_outcome
        self._heap: list[tuple[float, int, _Entry]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.config.max_batches_in_flight)
        self._batches: set[asyncio.Task[None]] = set()
        self.polls = 0
        self.batches = 0

    @property
    def pending(self) -> int:
        """Entries in the heap (cancelled ones are dropped lazily)."""
        return len(self._heap)

    async def wait_for(
        self,
        remote_id: str,
        method: str,
        params: Mapping[str, ParamValue],
        *,
        first_poll_s: float,
        interval_s: float,
        elapsed_s: float = 0.0,
    ) -> Solution:
        """Poll ``remote_id`` on its schedule until it has an answer; raise what ends the solve.

        ``elapsed_s`` is how long ago the remote task was submitted (a resumed solve polls at once
        if its first-poll delay has already passed).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Solution] = loop.create_future()
        now = time.monotonic()
        deadline = now + max(0.0, self.config.solve_timeout_s - elapsed_s)
        entry = _Entry((remote_id, method, params), max(0.0, interval_s), deadline, future)
        self._push(now + max(0.0, first_poll_s - elapsed_s), entry)
        return await future

    def _push(self, due: float, entry: _Entry) -> None:
        was_first = not self._heap or due < self._heap[0][0]
        heapq.heappush(self._heap, (due, next(self._seq), entry))
        if was_first:
            self._wake.set()

    async def run(self) -> None:
        """Pop what is due, send it in batches, until cancelled."""
        try:
            while True:
                self._drop_cancelled_head()
                if not self._heap:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
                    continue
                due = self._take_due()
                for start in range(0, len(due), self.config.batch_max):
                    await self._slots.acquire()
                    batch = due[start : start + self.config.batch_max]
                    task = asyncio.create_task(self._send(batch), name="poll-batch")
                    self._batches.add(task)
                    task.add_done_callback(self._batches.discard)
        finally:
            for task in list(self._batches):
                task.cancel()

    def _drop_cancelled_head(self) -> None:
        while self._heap and self._heap[0][2].future.done():
            heapq.heappop(self._heap)

    def _take_due(self) -> list[_Entry]:
        horizon = time.monotonic() + self.config.coalesce_s
        due: list[_Entry] = []
        ids: set[str] = set()
        held_back: list[_Entry] = []
        while self._heap and self._heap[0][0] <= horizon:
            entry = heapq.heappop(self._heap)[2]
            if entry.future.done():
                continue
            if entry.item[0] in ids:
                held_back.append(entry)  # the same id twice in one request would be ambiguous
                continue
            ids.add(entry.item[0])
            due.append(entry)
        for entry in held_back:
            self._push(horizon, entry)
        return due

    async def _send(self, batch: list[_Entry]) -> None:
        try:
            live = [e for e in batch if not e.future.done()]
            if not live:
                return
            self.batches += 1
            self.polls += len(live)
            outcomes: Mapping[str, PollOutcome]
            try:
                outcomes = await self._poll_many([e.item for e in live])
            except asyncio.CancelledError:
                raise
            except (CaptchaQueueError, OSError) as exc:
                error = exc if isinstance(exc, SolverError) else TransientError("POLL_FAILED", str(exc))
                outcomes = {e.item[0]: error for e in live}
            except Exception as exc:  # a solver bug must not strand every waiting task
                log.exception("poll_many failed unexpectedly")
                outcomes = {e.item[0]: TransientError("POLL_FAILED", type(exc).__name__) for e in live}
            now = time.monotonic()
            for entry in live:
                missing = TransientError("POLL_MISSING", "no outcome for this id")
                self._settle(entry, outcomes.get(entry.item[0], missing), now)
        finally:
            self._slots.release()

    def _settle(self, entry: _Entry, outcome: PollOutcome, now: float) -> None:
        if entry.future.done():
            return
        if isinstance(outcome, Solution):
            self._count("OK")
            entry.future.set_result(outcome)
            return
        if outcome is None:
            self._count("CAPCHA_NOT_READY")
            entry.failures = 0
            if now >= entry.deadline:
                entry.future.set_exception(TransientError("SOLVE_TIMEOUT", "the remote solve took too long"))
                return
            self._push(now + entry.interval_s, entry)
            return
        self._count(outcome.code)
        if isinstance(outcome, TransientError | SolverBusy):
            # The poll failed, not the solve: ask again later, up to max_failures in a row.
            entry.failures += 1
            if entry.failures >= self.config.max_failures or now >= entry.deadline:
                entry.future.set_exception(outcome)
                return
            delay = max(entry.interval_s, self.config.failure_backoff.delay_s(entry.failures))
            if outcome.retry_after_s is not None:
                delay = max(delay, outcome.retry_after_s)
            log.debug("poll of %s failed (%s); again in %.2fs", entry.item[0], outcome.code, delay)
            self._push(now + delay, entry)
            return
        entry.future.set_exception(outcome)

    def _count(self, code: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome(code)

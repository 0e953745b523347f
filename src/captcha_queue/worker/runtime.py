"""The worker: one event loop keeps up to ``concurrency`` solves in flight.

``Worker`` composes the parts of the runtime, each in its own module, over one ``Shared`` state
(``_shared``: the runs of this process, the events that wake and stop them, the limiter, the
Redis retry):

* **claiming** (``_claiming``): the claim loop, the buffer of claimed tasks waiting for a slot, its
  wake-ups, ``stop()``.
* **one attempt** (``_attempt``): slot -> submit -> record the remote id under the lease -> scheduled
  polls (one process-wide timer, ``polling.py``) -> the one final write (complete, fail with or
  without a retry, expire, release), and the drain of a cancelled run's solve.
* **leases** (``_leases``): the renewal of the task leases, and what a lost lease or a cancelled task
  does to its run.
* **reports** (``_reports``): verdicts on answers queued for this worker's account, sent to the service.

This module keeps the lifecycle and the fleet limit. Background loops (renew, slot pump, poll timer,
breaker probe, limit refresh) are named tasks under a supervisor that logs a loop's death and
restarts it. Shutdown (``stop()``: SIGTERM, or an operator's drain request answered by a heartbeat,
``drain``): stop claiming, let in-flight solves finish within ``grace_s``, release the rest (remote
ids stay recorded for resume), give slots back, unregister.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..errors import AccountError, CaptchaQueueError, SolverError
from ..models import AccountInfo, Claim, WorkerDrain
from ._attempt import Attempts
from ._claiming import Claiming
from ._leases import Leases
from ._reports import ReportSender
from ._shared import REDIS_BACKOFF, Shared
from .breaker import AccountBreaker
from .config import WorkerConfig
from .events import NullEvents, WorkerEvents
from .limiter import SlotLimiter
from .polling import PollScheduler
from .registry import WorkerRegistry, new_worker_id
from .retry import Backoff

if TYPE_CHECKING:
    from ..queue._producer import AsyncCaptchaQueue
    from ..solvers.base import Solver

__all__ = ["Worker", "WorkerConfig"]

log = logging.getLogger("captcha_queue.worker")

#: The code of an account_info that found no money (the balance it records is then 0).
_NO_FUNDS = "ERROR_ZERO_BALANCE"


async def _cancel_all(tasks: list[asyncio.Task[None]], *, timeout_s: float) -> set[asyncio.Task[None]]:
    """Cancel ``tasks`` and wait up to ``timeout_s``; returns those still running. A task still running
    is cancelled again every 0.1 s: a cancellation that lands inside a Redis call can come back as a
    connection error, which the loop's handler takes for an outage (it logs it and sleeps its period),
    and the first cancel is lost. A drain, answered by the renewal that wakes with the report loop, hit
    that every time (5 s more to exit)."""
    pending = set(tasks)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while pending:
        for task in pending:
            task.cancel()
        left_s = deadline - asyncio.get_running_loop().time()
        if left_s <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(0.1, left_s))
    return pending


class Worker:
    """Claims tasks from ``queue`` and solves them with ``solver``; see the module docstring."""

    def __init__(
        self,
        queue: AsyncCaptchaQueue,
        solver: Solver,
        config: WorkerConfig | None = None,
        *,
        events: WorkerEvents | None = None,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        limit_share: Callable[[int], int | None] | None = None,
        on_drain: Callable[[], None] | None = None,
    ) -> None:
        """``Worker(q, solver, WorkerConfig(concurrency=2000))``; a ``WorkerSettings`` is a WorkerConfig.

        ``limit_share``: this worker's part of the account's threads when they come from the account
        (``worker --namespaces``: a static share per namespace; None: too few threads for a share).
        ``on_drain``: what an operator's drain request (``drain_worker``) stops, when it is more than
        this worker (the process's ``stop``); None: ``self.stop``."""
        self.queue = queue
        #: What a drain request stops (None: this worker; ``--namespaces``/``--accounts``: the process).
        self.on_drain = on_drain
        self._limit_share = limit_share
        self.solver = solver
        self.config = cfg = config or WorkerConfig()
        self.events: WorkerEvents = events or NullEvents()
        self.worker_id = worker_id or new_worker_id()
        self._rng = rng or random.Random()
        scale = cfg.time_scale
        self.poller = PollScheduler(
            solver.poll_many,
            cfg.poll.scaled(scale),
            on_outcome=lambda code: self.events.solver_request("res", code),
        )
        self.breaker = AccountBreaker(
            queue,
            self.account_info,
            account=solver.account,
            key_fingerprint=solver.key_fingerprint,
            worker_id=self.worker_id,
            probe_every_s=cfg.probe_every_s * scale,
            ip_ban_pause_s=300.0 * scale,
            on_change=self.events.set_paused,
            on_account_change=self.events.set_account_paused,
        )
        self.registry = WorkerRegistry(
            queue,
            self.worker_id,
            ttl_s=cfg.lease_s,
            concurrency=cfg.concurrency,
            account=solver.account,
            solver=solver.kind,
            key=solver.key_fingerprint,
            on_drain=self._drain_requested,
        )
        self._s = shared = Shared(
            queue,
            solver,
            cfg,
            events=self.events,
            worker_id=self.worker_id,
            breaker=self.breaker,
            rng=self._rng,
        )
        self._attempts = Attempts(shared, self.poller, cfg.retry.scaled(scale))
        self._leases = Leases(shared, self.registry)
        self._claiming = Claiming(shared, drive=self._attempts.drive, drop=self._leases.drop)
        self.reports = ReportSender(shared)
        self._loops: list[asyncio.Task[None]] = []
        self._balance_asked = float("-inf")  # monotonic time of the last account_info call

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def limiter(self) -> SlotLimiter | None:
        """The fleet-wide slots once the limit is known (None without one, or before)."""
        return self._s.limiter

    @property
    def finished(self) -> int:
        """Tasks this worker ended (completed, failed for good, expired)."""
        return self._attempts.finished

    @property
    def in_flight(self) -> int:
        return len(self._s.runs)

    def stop(self) -> None:
        """Begin a graceful shutdown (safe to call from a signal handler on the loop)."""
        self._claiming.stop()

    @property
    def drain(self) -> WorkerDrain | None:
        """The operator's drain request this worker got (it then stops as on SIGTERM), or None."""
        return self.registry.drain

    def _drain_requested(self, request: WorkerDrain) -> None:
        """A heartbeat answered a drain request: the graceful shutdown of SIGTERM (no new claims,
        in-flight solves finished within ``grace_s``, the rest released, unregistered)."""
        log.warning(
            "worker %s: drain requested (reason: %s); finishing %d tasks in flight, then exiting",
            self.worker_id,
            request.reason,
            len(self._s.runs),
        )
        (self.on_drain or self.stop)()

    @property
    def paused(self) -> bool:
        """This worker's account (or the whole fleet) is paused: it takes no task."""
        return self.breaker.paused

    @property
    def ready(self) -> bool:
        """The fleet limit is known: a solve can be sent."""
        return self._s.limit_known.is_set()

    def capacity(self) -> int:
        """How many more tasks this worker would take now (its concurrency and slot-wait buffer)."""
        return self._claiming.capacity()

    @property
    def room(self) -> asyncio.Event:
        """Set when a run leaves the slot-wait buffer or ends (capacity may have grown)."""
        return self._s.room

    def accept(self, claim: Claim) -> None:
        """Run a task claimed for this worker by someone else in this process (``multi.MultiWorker``
        claims for several accounts and routes each task to one of them). Fencing is by lease token:
        any worker of the process may finish it."""
        self._claiming.start_run(claim)

    async def run(self, *, claim_tasks: bool = True) -> None:
        """Run until ``stop()``; then shut down gracefully and return. ``claim_tasks=False``: take
        tasks only through ``accept`` (a router claims for this worker)."""
        await self._start()
        if not claim_tasks:
            try:
                await self._s.stopping.wait()
            finally:
                await self._shutdown()
            return
        claim_loop = asyncio.create_task(self._claiming.claim_loop(), name="claim-loop")
        try:
            await self._s.stopping.wait()
            await asyncio.wait([claim_loop], timeout=self.config.claim_block_s + 5.0)
        finally:
            claim_loop.cancel()
            await asyncio.wait([claim_loop], timeout=5.0)
            log.debug("shutdown: claim loop stopped")
            await self._shutdown()

    def _slot_lease_s(self) -> float:
        """Slots follow the task lease (renewed in the same period) plus one renewal period.

        Tied to ``lease_s`` so a killed worker's slots come back soon after its tasks do, not after
        a fixed 30 s; one period longer so the task's next owner adopts the slot of a solve that
        is still running before any other worker may reap it (which would put N + 1 solves in
        flight at the service).
        """
        return self.config.lease_s + self.config.renew_period_s

    async def _start(self) -> None:
        await self._s.redis(lambda: self.registry.heartbeat(0), persist=True)
        await self._check_account_name()
        await self.breaker.refresh()
        await self._s.redis(self.queue.check_data_loss)  # records the data set this worker starts on
        if self.config.solver_limit is not None:
            await self._use_limit(self.config.solver_limit)
            await self._ask_balance()  # the limit loop asks it otherwise
        else:
            self.events.set_limit_unknown(True)
            await self._limit_from_account()  # retried by the limit loop until it answers
            self._supervise("limit", self._limit_loop)
        self._supervise("poll-timer", self.poller.run)
        self._supervise("renew", self._leases.renew_loop)
        self._supervise("breaker-probe", self.breaker.run)
        self._supervise("reports", self.reports.run)
        if self.config.balance_refresh_s > 0:
            self._supervise("balance", self._balance_loop)
        if not self._s.limit_known.is_set():
            limit = "unknown yet (no solve is sent until the account answers)"
        else:
            limit = str(self.limiter.limit) if self.limiter is not None else "none"
        log.info(
            "worker %s started: concurrency %d, lease %.1fs, solver %s (account %s), fleet limit %s",
            self.worker_id,
            self.config.concurrency,
            self.config.lease_s,
            self.solver.kind,
            self.breaker.ref,
            limit,
        )

    async def _check_account_name(self) -> None:
        """Slots are keyed by the account name: two API keys under one name share one fleet limit."""
        try:
            workers = await self.queue.workers()
        except CaptchaQueueError:
            return
        mine = self.solver.key_fingerprint
        for other in workers:
            account, key = other.info.get("account"), other.info.get("key")
            if account == self.solver.account and key and mine and key != mine:
                log.error(
                    "account %s is also used with another API key (key %s, worker %s): both share one "
                    "fleet limit; give each key its own --account",
                    self.solver.account,
                    key,
                    other.id,
                )
                return

    async def _shutdown(self) -> None:
        await self._attempts.wind_down()
        log.debug("shutdown: stopping background loops")
        stuck = await _cancel_all(self._loops, timeout_s=5.0)
        if stuck:
            log.warning("shutdown: loops still running after cancel: %s", [t.get_name() for t in stuck])
        log.debug("shutdown: giving slots back")
        if self.limiter is not None:
            await self.limiter.aclose()
        with contextlib.suppress(CaptchaQueueError):
            await self.registry.unregister()
        log.info("worker %s stopped after %d finished tasks", self.worker_id, self.finished)

    def _supervise(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        async def guarded() -> None:
            failures = 0
            while True:
                try:
                    await body()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    failures += 1
                    delay = REDIS_BACKOFF.delay_s(failures, self._rng) + 0.05
                    log.exception("background loop %s died; restarting in %.2fs", name, delay)
                    await asyncio.sleep(delay)

        self._loops.append(asyncio.create_task(guarded(), name=name))

    # -- the fleet-wide limit ----------------------------------------------------------------
    async def _use_limit(self, limit: int | None) -> None:
        """The fleet limit is known: N (a limiter and its pump), or None (the account has none)."""
        if limit is not None:
            self._s.limiter = limiter = SlotLimiter(
                self.queue.client,
                self.queue.keys,
                self.solver.account,
                limit=limit,
                config=dataclasses.replace(
                    self.config.limiter.scaled(self.config.time_scale), lease_s=self._slot_lease_s()
                ),
            )
            await self._s.redis(lambda: self._set_limit(limit), persist=True)
            self._supervise("slot-pump", limiter.run)
        self._s.limit_known.set()
        self.events.set_limit_unknown(False)
        self._s.room.set()

    # -- the account's balance -------------------------------------------------------------------
    async def account_info(self) -> AccountInfo:
        """``solver.account_info()``, recording the balance it tells (or 0 for a "no funds" answer)
        with this worker's registration: ``AccountsAPI.account_balances`` reads it back for the
        gateway's ``getbalance``. Every caller goes through here: start, limit refresh, breaker probe."""
        self._balance_asked = time.monotonic()
        try:
            info = await self.solver.account_info()
        except AccountError as exc:
            if exc.code == _NO_FUNDS:
                await self._record_balance(0.0)
            raise
        if info.balance is not None:
            await self._record_balance(info.balance)
        return info

    async def _record_balance(self, balance: float) -> None:
        self.registry.record_balance(balance)
        with contextlib.suppress(CaptchaQueueError):  # the next renewal sends it anyway
            await self.registry.heartbeat(self.in_flight)

    async def _ask_balance(self) -> None:
        """One best-effort account_info for the balance alone (its errors pause nothing here: the
        solves and the breaker's probe deal with them)."""
        try:
            await self.account_info()
        except SolverError as exc:
            log.debug("account %s: balance not known (%s)", self.breaker.ref, exc.code)

    async def _balance_loop(self) -> None:
        """Ask the balance when nothing else did for ``balance_refresh_s`` (time-scaled)."""
        every_s = self.config.balance_refresh_s * self.config.time_scale
        while True:
            wait_s = every_s - (time.monotonic() - self._balance_asked)
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            elif self.breaker.account_state is None:
                await self._ask_balance()
            else:
                await asyncio.sleep(every_s)  # paused: the breaker's probe asks

    async def _limit_from_account(self) -> bool:
        """Ask the account for its threads and use them; False if that gave no usable limit."""
        try:
            info = await self.account_info()
        except AccountError as exc:
            error = exc
            await self._s.redis(lambda: self._s.pause_account(error), persist=True)
            return False
        except SolverError as exc:
            waiting = "" if self._s.limit_known.is_set() else "; no fleet limit yet, so no solve is sent"
            log.warning("could not read the account's threads (%s)%s", exc.code, waiting)
            return False
        threads = info.threads
        if threads is not None and threads < 1:
            log.warning("the account reports %d threads: no fleet limit from it, no solve is sent", threads)
            return False
        if threads is not None and self._limit_share is not None:
            share = self._limit_share(threads)
            if share is None:
                log.warning(
                    "the account reports %d threads: too few for a share per namespace, no solve is sent",
                    threads,
                )
                return False
            threads = share
        if not self._s.limit_known.is_set():
            log.info("fleet limit from the account's threads: %s", threads if threads is not None else "none")
            await self._use_limit(threads)
        elif threads is not None and self.limiter is not None and threads != self.limiter.limit:
            log.info("account threads changed: fleet limit %d -> %d", self.limiter.limit, threads)
            await self._set_limit(threads)
        return True

    async def _set_limit(self, limit: int) -> None:
        assert self.limiter is not None
        state = await self.limiter.set_limit(limit)
        self.events.set_slots(state.used, state.effective)

    async def _limit_loop(self) -> None:
        """Until the account has answered, ask again with backoff (an account error waits for the
        account's resume); then re-read its threads every ``limit_refresh_s``."""
        scale = self.config.time_scale
        backoff = Backoff(base_s=scale, cap_s=min(30.0, self.config.limit_refresh_s) * scale)
        failures = 0
        while True:
            if self._s.limit_known.is_set():
                await asyncio.sleep(self.config.limit_refresh_s * scale)
            else:
                failures += 1
                await asyncio.sleep(backoff.ceiling_s(failures) * (0.5 + self._rng.random() / 2))
                await self.breaker.wait_resumed()  # the probe (or an operator) says when to try again
            if await self._limit_from_account():
                failures = 0

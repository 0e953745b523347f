"""The worker: one event loop keeps up to ``concurrency`` solves in flight.

The work of a task is split in three pieces:

* **fetch** (``_claim_loop``): claims in batches as capacity frees up, blocking on Redis while the
  queue is empty. With a fleet-wide solver limit, only a small buffer of claimed tasks waits for a
  slot, so claimed-but-idle tasks never pile up in one process while others starve.
* **execute** (``_execute``): slot -> submit -> record the remote id under the lease -> scheduled
  polls (one process-wide timer, ``polling.py``) -> the answer. A reclaimed task whose remote id is
  recent resumes polling it instead of paying for a second solve.
* **finish** (``_finish``): the one write that ends an attempt (complete, fail with or without a
  retry, expire, release), shielded from cancellation and retried while Redis is unreachable; fencing
  refuses it if the lease was lost meanwhile, and the task is then simply dropped.

Background loops (renew, slot pump, poll timer, breaker probe, limit refresh) are named tasks under a
supervisor that logs a loop's death and restarts it. Shutdown: stop claiming, let in-flight solves
finish within ``grace_s``, release the rest (remote ids stay recorded for resume), give slots back,
unregister.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ..errors import (
    AccountError,
    CaptchaQueueError,
    LeaseLost,
    RedisUnavailable,
    SolverBusy,
    SolverError,
    TaskCancelled,
    TaskRejected,
    Unsolvable,
)
from ..models import Claim, Result, Solution
from .breaker import AccountBreaker
from .config import WorkerConfig
from .events import NullEvents, WorkerEvents
from .limiter import SlotLimiter
from .polling import PollScheduler
from .registry import WorkerRegistry, new_worker_id
from .retry import Action, Backoff

if TYPE_CHECKING:
    from ..queue._producer import AsyncCaptchaQueue
    from ..solvers.base import Solver

__all__ = ["Worker", "WorkerConfig"]

log = logging.getLogger("captcha_queue.worker")
T = TypeVar("T")

#: Poll answers that mean the service no longer knows a remote id (a resume came too late).
_UNKNOWN_REMOTE = frozenset({"ERROR_WRONG_CAPTCHA_ID", "ERROR_WRONG_ID_FORMAT"})
#: Submit failures after which the service may have the task anyway (the answer was lost).
_SUBMIT_UNCERTAIN = frozenset({"TIMEOUT", "CONNECTION_ERROR"})
_REDIS_BACKOFF = Backoff(base_s=0.05, cap_s=2.0)


Stage = Literal["claimed", "slot", "submit", "poll", "finish"]


class _Stop(Exception):
    """Internal: end this attempt with a release (fleet paused) or an expiry."""

    def __init__(self, how: Literal["release", "expire"]) -> None:
        super().__init__(how)
        self.how = how


@dataclass(eq=False)
class _Run:
    """One claimed task in this process."""

    claim: Claim
    claimed_at: float = field(default_factory=time.monotonic)
    stage: Stage = "claimed"
    task: asyncio.Task[None] | None = None
    drop_reason: str | None = None  # set when renew said lost/cancelled, or on shutdown ("shutdown")
    resumed: bool = False
    submitted_at: float | None = None
    #: A solve of this run may be running at the service (from the moment in.php is called until an
    #: answer ends it): its slot must then stay counted when the run ends early (a ghost).
    at_service: bool = False
    data_lost: bool = False
    remote_id: str | None = None
    remote_since: float = 0.0  # monotonic time the remote solve started (as far as this run knows)


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
    ) -> None:
        """``Worker(q, solver, WorkerConfig(concurrency=2000))``; a ``WorkerSettings`` is a WorkerConfig."""
        self.queue = queue
        self.solver = solver
        self.config = cfg = config or WorkerConfig()
        self.events: WorkerEvents = events or NullEvents()
        self.worker_id = worker_id or new_worker_id()
        self._rng = rng or random.Random()
        scale = cfg.time_scale
        self._policy = cfg.retry.scaled(scale)
        self.poller = PollScheduler(
            solver.poll_many,
            cfg.poll.scaled(scale),
            on_outcome=lambda code: self.events.solver_request("res", code),
        )
        self.breaker = AccountBreaker(
            queue,
            solver.account_info,
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
        )
        self.limiter: SlotLimiter | None = None
        #: Set once the fleet limit is known (a limiter, or the account reports no thread limit):
        #: no solve is sent before.
        self._limit_known = asyncio.Event()
        self._busy_streak = 0  # busy answers in a row on this account (any task of this process)
        self._runs: dict[str, _Run] = {}
        self._room = asyncio.Event()
        self._stopping = asyncio.Event()
        self._finishing: set[asyncio.Task[Any]] = set()
        self._draining: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.finished = 0

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._runs)

    def stop(self) -> None:
        """Begin a graceful shutdown (safe to call from a signal handler on the loop)."""
        if not self._stopping.is_set():
            log.info("worker %s stopping: no new claims, %d in flight", self.worker_id, len(self._runs))
        self._stopping.set()
        self._room.set()

    async def run(self) -> None:
        """Run until ``stop()``; then shut down gracefully and return."""
        await self._start()
        claim_loop = asyncio.create_task(self._claim_loop(), name="claim-loop")
        try:
            await self._stopping.wait()
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
        await self._redis(lambda: self.registry.heartbeat(0), persist=True)
        await self._check_account_name()
        await self.breaker.refresh()
        await self._redis(self.queue.check_data_loss)  # records the data set this worker starts on
        if self.config.solver_limit is not None:
            await self._use_limit(self.config.solver_limit)
        else:
            self.events.set_limit_unknown(True)
            await self._limit_from_account()  # retried by the limit loop until it answers
            self._supervise("limit", self._limit_loop)
        self._supervise("poll-timer", self.poller.run)
        self._supervise("renew", self._renew_loop)
        self._supervise("breaker-probe", self.breaker.run)
        if not self._limit_known.is_set():
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
        cfg = self.config
        runs = [r.task for r in self._runs.values() if r.task is not None]
        if runs:
            log.info("waiting up to %.1fs for %d in-flight tasks", cfg.grace_s, len(runs))
            await asyncio.wait(runs, timeout=cfg.grace_s)
        left = list(self._runs.values())
        for run in left:
            run.drop_reason = run.drop_reason or "shutdown"
            if run.task is not None and run.stage != "finish":
                run.task.cancel()
        pending = [r.task for r in left if r.task is not None]
        if pending:
            log.info("releasing %d unfinished tasks (remote ids kept for resume)", len(pending))
            await asyncio.wait(pending, timeout=10.0)
        if self._finishing:
            await asyncio.wait(list(self._finishing), timeout=10.0)
        for drain in list(self._draining):
            drain.cancel()  # their slots stay counted as ghosts until the solves must be over
        if self._draining:
            await asyncio.wait(list(self._draining), timeout=5.0)
        log.debug("shutdown: stopping background loops")
        for loop in self._loops:
            loop.cancel()
        _, stuck = await asyncio.wait(self._loops, timeout=5.0)
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
                    delay = _REDIS_BACKOFF.delay_s(failures, self._rng) + 0.05
                    log.exception("background loop %s died; restarting in %.2fs", name, delay)
                    await asyncio.sleep(delay)

        self._loops.append(asyncio.create_task(guarded(), name=name))

    # -- the fleet-wide limit ----------------------------------------------------------------
    async def _use_limit(self, limit: int | None) -> None:
        """The fleet limit is known: N (a limiter and its pump), or None (the account has none)."""
        if limit is not None:
            self.limiter = SlotLimiter(
                self.queue.client,
                self.queue.keys,
                self.solver.account,
                limit=limit,
                config=dataclasses.replace(
                    self.config.limiter.scaled(self.config.time_scale), lease_s=self._slot_lease_s()
                ),
            )
            await self._redis(lambda: self._set_limit(limit), persist=True)
            self._supervise("slot-pump", self.limiter.run)
        self._limit_known.set()
        self.events.set_limit_unknown(False)
        self._room.set()

    async def _limit_from_account(self) -> bool:
        """Ask the account for its threads and use them; False if that gave no usable limit."""
        try:
            info = await self.solver.account_info()
        except AccountError as exc:
            error = exc
            await self._redis(lambda: self._pause_account(error), persist=True)
            return False
        except SolverError as exc:
            waiting = "" if self._limit_known.is_set() else "; no fleet limit yet, so no solve is sent"
            log.warning("could not read the account's threads (%s)%s", exc.code, waiting)
            return False
        threads = info.threads
        if threads is not None and threads < 1:
            log.warning("the account reports %d threads: no fleet limit from it, no solve is sent", threads)
            return False
        if not self._limit_known.is_set():
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
            if self._limit_known.is_set():
                await asyncio.sleep(self.config.limit_refresh_s * scale)
            else:
                failures += 1
                await asyncio.sleep(backoff.ceiling_s(failures) * (0.5 + self._rng.random() / 2))
                await self.breaker.wait_resumed()  # the probe (or an operator) says when to try again
            if await self._limit_from_account():
                failures = 0

    async def _wait_for_limit(self, run: _Run) -> None:
        """No solve without a known fleet limit: the task waits, claimed, until the account answered
        (released if this worker is paused meanwhile, expired at its deadline)."""
        run.stage = "slot"
        expires_at = run.claim.task.expires_at
        while not self._limit_known.is_set():
            if self.breaker.paused:
                raise _Stop("release")
            wait_s = max(0.05, min(1.0, self.config.renew_period_s))
            if expires_at is not None:
                left_s = expires_at - time.time()
                if left_s <= 0:
                    raise _Stop("expire")
                wait_s = min(wait_s, left_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._limit_known.wait()

    # -- fetch ---------------------------------------------------------------------------------
    def _capacity(self) -> int:
        room = self.config.concurrency - len(self._runs)
        if self.limiter is not None or not self._limit_known.is_set():
            waiting = sum(1 for r in self._runs.values() if r.stage in ("claimed", "slot"))
            room = min(room, self.config.buffer - waiting)
        return min(room, self.config.claim_batch_max)

    async def _claim_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if self.breaker.paused:
                # Nothing is claimed while this worker's account (or the fleet) is paused: the claim
                # script only knows the fleet's pause. Look again at least once a second.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.05, min(1.0, self.config.renew_period_s))):
                        await self.breaker.wait_resumed()
                with contextlib.suppress(CaptchaQueueError):  # nothing supervises this loop
                    await self.breaker.refresh()
                continue
            count = self._capacity()
            if count <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                claims = await self.queue.claim(
                    self.worker_id,
                    count,
                    self.config.lease_s,
                    block_s=self.config.claim_block_s,
                    stop=self._stopping,
                )
            except RedisUnavailable as exc:
                failures += 1
                delay = _REDIS_BACKOFF.delay_s(failures, self._rng) + 0.05
                log.warning("claim: %s; retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            except Exception:
                # Nothing supervises this loop: an unexpected error must not end claiming for good
                # while the process looks alive (found by the chaos suite's network faults).
                failures += 1
                delay = _REDIS_BACKOFF.delay_s(failures, self._rng) + 0.05
                log.exception("claim failed unexpectedly; retrying in %.2fs", delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            if claims:
                self.breaker.note_claimed()
            for claim in claims:
                self._start_run(claim)
            if claims and self._stopping.is_set():
                log.debug("claimed %d tasks while stopping: they are released", len(claims))

    def _start_run(self, claim: Claim) -> None:
        stale = self._runs.get(claim.task_id)
        if stale is not None:
            # This worker claimed a task it still runs: the old claim's lease lapsed (Redis was cut,
            # the renewals were late). The old run stops; a submit it had in flight stays counted as
            # a ghost of its slot, and the new claim takes (or, resuming the same remote id, adopts)
            # a slot of its own: never the old claim's, which would let a second solve run uncounted.
            self._drop(stale, "lease lost")
        run = _Run(claim)
        self._runs[claim.task_id] = run
        self.events.task_started(claim)
        self.events.set_in_flight(len(self._runs))
        run.task = asyncio.create_task(self._drive(run), name=f"task:{claim.task_id}")

    async def _drive(self, run: _Run) -> None:
        """Execute one claimed task, then finish it; never raises."""
        outcome: Solution | BaseException
        try:
            if self._stopping.is_set():
                raise _Stop("release")
            outcome = await self._execute(run)
        except asyncio.CancelledError:
            if run.drop_reason == "shutdown":
                outcome = _Stop("release")
            else:
                self._forget(run, slot_outcome="error")
                log.debug("task %s dropped: %s", run.claim.task_id, run.drop_reason or "cancelled")
                self._start_drain(run)
                return
        except Exception as exc:
            outcome = exc
        finisher = asyncio.ensure_future(self._finish(run, outcome))
        self._finishing.add(finisher)
        finisher.add_done_callback(self._finishing.discard)
        with contextlib.suppress(asyncio.CancelledError):
            # Shielded: a cancellation now (lease lost, shutdown) must not cut the final write short.
            await asyncio.shield(finisher)

    # -- execute -------------------------------------------------------------------------------
    async def _execute(self, run: _Run) -> Solution:
        claim = run.claim
        task = claim.task
        remote_id: str | None = None
        elapsed_s = 0.0
        if claim.remote_id and claim.remote_submitted_at is not None:
            age_s = time.time() - claim.remote_submitted_at
            if age_s <= self.config.resume_window_s * self.config.time_scale:
                remote_id, elapsed_s, run.resumed = claim.remote_id, max(0.0, age_s), True
                run.at_service = True
                log.debug("task %s resumes remote id %s (%.1fs old)", task.id, remote_id, age_s)
        while True:
            await self._take_slot(run, resume=remote_id is not None)
            if remote_id is None:
                remote_id = await self._submit(run)
                elapsed_s = 0.0
            run.stage = "poll"
            run.remote_id, run.remote_since = remote_id, time.monotonic() - elapsed_s
            try:
                solution = await self._poll(run, remote_id)
            except (TaskRejected, Unsolvable) as exc:
                run.at_service = False  # the service's answer ended this solve
                if not (isinstance(exc, TaskRejected) and run.resumed and exc.code in _UNKNOWN_REMOTE):
                    raise
                log.info("task %s: the service forgot remote id %s; submitting anew", task.id, remote_id)
                remote_id, run.resumed = None, False
                continue
            run.at_service = False
            return solution

    async def _poll(self, run: _Run, remote_id: str) -> Solution:
        """Wait for the answer to ``remote_id`` on the process-wide poll timer."""
        task = run.claim.task
        first_s, interval_s = self.solver.poll_schedule(task.method, task.params)
        return await self.poller.wait_for(
            remote_id,
            task.method,
            task.params,
            first_poll_s=first_s,
            interval_s=interval_s,
            elapsed_s=time.monotonic() - run.remote_since,
        )

    async def _take_slot(self, run: _Run, *, resume: bool = False) -> None:
        if not self._limit_known.is_set():
            await self._wait_for_limit(run)
        if self.limiter is None or self.limiter.holds(run.claim.task_id, run.claim.lease_token):
            return
        run.stage = "slot"
        timeout_s = None
        if run.claim.task.expires_at is not None:
            timeout_s = run.claim.task.expires_at - time.time()
            if timeout_s <= 0:
                raise _Stop("expire")
        try:
            async with asyncio.timeout(timeout_s):
                await self.limiter.acquire(run.claim.task_id, run.claim.lease_token, resume=resume)
        except TimeoutError:
            raise _Stop("expire") from None
        # This task leaves the buffer of claimed tasks waiting for a slot: the claim loop may
        # fetch one more (waking it only when a task *enters* the wait kept the buffer half used).
        run.stage = "submit"
        self._room.set()
        self.events.set_slots(self.limiter.used, self.limiter.effective)

    async def _submit(self, run: _Run) -> str:
        """Submit (backing off while the service is busy), then record the remote id under the lease."""
        task = run.claim.task
        busy_count = 0
        while True:
            if self.breaker.paused:
                raise _Stop("release")
            if task.expires_at is not None and time.time() >= task.expires_at:
                raise _Stop("expire")
            run.stage = "submit"
            run.at_service = True  # from here on a solve may exist even if the answer is lost
            try:
                remote_id = await self.solver.submit(task.method, task.params)
            except SolverBusy as exc:
                run.at_service = False
                self.events.solver_request("in", exc.code)
                busy_count += 1
                self._busy_streak += 1
                decision = self._policy.decide(
                    exc, attempt=run.claim.attempt, max_attempts=task.max_attempts, busy_count=busy_count
                )
                if self.limiter is not None:
                    self.limiter.release(task.id, run.claim.lease_token, outcome="busy")
                if self._busy_streak >= self.config.busy_pause_after:
                    await self._busy_pause(exc)
                    raise _Stop("release") from None  # back to the queue, no attempt consumed
                self.events.retry("busy")
                log.debug("task %s: solver busy (%s); again in %.2fs", task.id, exc.code, decision.delay_s)
                await asyncio.sleep(decision.delay_s)
                await self._take_slot(run)
                continue
            except SolverError as exc:
                run.at_service = exc.code in _SUBMIT_UNCERTAIN
                self.events.solver_request("in", exc.code)
                raise
            self.events.solver_request("in", "OK")
            self._busy_streak = 0
            break
        run.submitted_at = time.monotonic()
        run.claim = await self._redis(lambda: self.queue.record_remote(run.claim, remote_id))
        log.debug("task %s submitted as remote id %s", task.id, remote_id)
        return remote_id

    async def _busy_pause(self, busy: SolverBusy) -> None:
        """Busy answers that do not clear (2captcha's ERROR_ZERO_BALANCE: no funds) pause the account
        for ``busy_pause_s``; its tasks go back to the queue."""
        streak, self._busy_streak = self._busy_streak, 0
        pause_s = self.config.busy_pause_s * self.config.time_scale
        reason = f"{streak} busy answers in a row ({busy.code}: {busy.message})"
        error = AccountError(busy.code, busy.message, pause_s=pause_s)
        await self._redis(lambda: self._pause_account(error, reason=reason), persist=True)

    async def _pause_account(self, error: AccountError, *, reason: str | None = None) -> None:
        if await self.breaker.trip(error, reason=reason):
            self.events.account_paused(error.code)

    # -- finish --------------------------------------------------------------------------------
    async def _finish(self, run: _Run, outcome: Solution | BaseException) -> None:
        run.stage = "finish"
        claim = run.claim
        slot_outcome: Literal["ok", "error"] = "error"
        try:
            if isinstance(outcome, Solution):
                result = await self._redis(lambda: self.queue.complete(claim, outcome), persist=True)
                slot_outcome = "ok"
                self._finished(run, result)
            elif isinstance(outcome, _Stop) and outcome.how == "expire":
                self._finished(run, await self._redis(lambda: self.queue.expire(claim), persist=True))
            elif isinstance(outcome, _Stop):
                await self._redis(lambda: self.queue.release(claim), persist=True)
                log.debug("task %s released", claim.task_id)
            else:
                await self._after_error(run, outcome)
        except LeaseLost as exc:
            kind = "cancelled" if isinstance(exc, TaskCancelled) else "lease lost"
            log.info("task %s: %s, nothing written", claim.task_id, kind)
        except Exception:
            log.exception("task %s: the final write failed; its lease will return it", claim.task_id)
        finally:
            self._forget(run, slot_outcome=slot_outcome)

    async def _after_error(self, run: _Run, error: BaseException) -> None:
        claim = run.claim
        decision = self._policy.decide(
            error, attempt=claim.attempt, max_attempts=claim.task.max_attempts, rng=self._rng
        )
        if decision.action is Action.DROP:
            log.info("task %s dropped: %s", claim.task_id, error)
            return
        if decision.action is Action.PAUSE:
            assert isinstance(error, AccountError)
            await self._redis(lambda: self._pause_account(error), persist=True)
            await self._redis(lambda: self.queue.release(claim), persist=True)
            return
        if decision.action in (Action.RETRY, Action.FRESH_SOLVE):
            retried = await self._redis(
                lambda: self.queue.fail(claim, error, retry_in_s=max(decision.delay_s, 0.001)), persist=True
            )
            if retried is None:
                self.events.retry(error)
                log.debug("task %s: %s; retry in %.2fs", claim.task_id, decision.code, decision.delay_s)
            else:
                self._finished(run, retried)
            return
        if not isinstance(error, SolverError):
            log.error("task %s failed on an unexpected error", claim.task_id, exc_info=error)
        final = await self._redis(lambda: self.queue.fail(claim, error), persist=True)
        if final is not None:
            self._finished(run, final)

    def _finished(self, run: _Run, result: Result) -> None:
        self.finished += 1
        self.events.task_finished(result)
        total_s = time.monotonic() - run.claimed_at
        fields = {
            "task_id": result.id,
            "method": result.method,
            "status": result.status,
            "attempts": result.attempts,
            "queue_wait_s": _round(result.queue_wait_s),
            "solve_s": _round(result.solve_s),
            "in_worker_s": round(total_s, 3),
            "resumed": run.resumed,
        }
        if result.error_code:
            fields["error_code"] = result.error_code
        log.info(
            "task %s %s %s after %d attempt(s)",
            result.id,
            result.method,
            result.status,
            result.attempts,
            extra={"fields": fields},
        )

    def _forget(self, run: _Run, *, slot_outcome: Literal["ok", "error"]) -> None:
        task_id = run.claim.task_id
        if self._runs.get(task_id) is run:
            del self._runs[task_id]
        if not self._drains(run):  # else the drain keeps the slot until the solve is over
            self._release_slot(run, slot_outcome)
        self.events.set_in_flight(len(self._runs))
        self._room.set()

    def _release_slot(self, run: _Run, done: Literal["ok", "error"] = "error") -> None:
        """Give the run's slot back: freed if its solve is over, else left counted as a ghost."""
        if self.limiter is None:
            return
        outcome: Literal["ok", "error", "abandon", "abandon_lost"] = done
        if run.at_service:
            outcome = "abandon_lost" if run.data_lost else "abandon"
        self.limiter.release(run.claim.task_id, run.claim.lease_token, outcome=outcome)

    def _drop(self, run: _Run, reason: str) -> None:
        """Stop a run whose task this worker may no longer finish (its slot handed back at once,
        so the renewal that follows does not register it again).

        A cancelled task's solve runs on at the service and nobody else will poll it: the slot is
        kept, and the remote id polled until the service is done with it (``_drain``)."""
        if run.stage == "finish" or run.task is None:
            return
        run.drop_reason = reason
        if not self._drains(run):
            self._release_slot(run)
        run.task.cancel()

    def _drains(self, run: _Run) -> bool:
        return (
            run.drop_reason == "cancelled"
            and run.stage == "poll"
            and run.remote_id is not None
            and self.limiter is not None
            and not self._stopping.is_set()
        )

    def _start_drain(self, run: _Run) -> None:
        if not self._drains(run) or run.remote_id is None:
            return
        drain = asyncio.create_task(self._drain(run, run.remote_id), name=f"drain:{run.claim.task_id}")
        self._draining.add(drain)
        drain.add_done_callback(self._draining.discard)

    async def _drain(self, run: _Run, remote_id: str) -> None:
        """Poll a cancelled task's solve to its end, then free its slot (no result is written)."""
        try:
            await self._poll(run, remote_id)
            run.at_service = False
        except (TaskRejected, Unsolvable):
            run.at_service = False
        except SolverError:
            pass  # unknown: the slot stays counted as a ghost until the solve must be over
        finally:
            self._release_slot(run)

    # -- leases, registry, pause -------------------------------------------------------------
    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.renew_period_s)
            await self._renew_once()

    async def _renew_once(self) -> None:
        try:
            loss = await self.queue.check_data_loss()
            if loss is not None:
                held = list(self._runs.values())
                log.critical(
                    "%s; the %d tasks this worker holds cannot be finished: dropped (their solves at "
                    "the service stay counted against the fleet limit until they must be over)",
                    loss.describe(),
                    len(held),
                )
                for run in held:
                    run.data_lost = True
                    self._drop(run, "data lost")
            runs = [r for r in self._runs.values() if r.stage != "finish" and r.drop_reason is None]
            if runs:
                outcome = await self.queue.renew([r.claim for r in runs], self.config.lease_s)
                renewed = {r.claim.task_id: r for r in runs}  # not a newer claim of the task
                for task_id, reason in [(t, "lease lost") for t in outcome.lost] + [
                    (t, "cancelled") for t in outcome.cancelled
                ]:
                    gone = renewed.get(task_id)
                    if gone is not None:
                        self._drop(gone, reason)
                if outcome.lost or outcome.cancelled:
                    log.info(
                        "renew: %d leases lost, %d tasks cancelled", len(outcome.lost), len(outcome.cancelled)
                    )
            if self.limiter is not None:
                await self.limiter.renew()
                self.events.set_slots(self.limiter.used, self.limiter.effective)
            await self.registry.heartbeat(len(self._runs))
            await self.breaker.refresh()
        except RedisUnavailable as exc:
            log.warning("renew: %s (leases are renewed again next period)", exc)

    async def _redis(self, call: Callable[[], Coroutine[Any, Any, T]], *, persist: bool = False) -> T:
        """Run a Redis call, retrying while Redis is unreachable (fencing decides what lands).

        While shutting down, a call gives up at once (with ``persist``, after ten failures).
        """
        failures = 0
        while True:
            try:
                return await call()
            except RedisUnavailable as exc:
                failures += 1
                if self._stopping.is_set() and (failures > 10 or not persist):
                    raise  # shutting down: the lease returns the task once Redis is back
                delay = _REDIS_BACKOFF.delay_s(failures, self._rng) + 0.02
                log.warning("Redis unavailable (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None

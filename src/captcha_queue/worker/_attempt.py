"""One attempt of one claimed task: slot -> submit -> record the remote id -> polls -> the one final write.

* **execute** (``_execute``): wait until the fleet limit is known, take a slot of the claim (task id and
  lease token), submit (backing off while the service is busy, pausing the account after
  ``busy_pause_after`` busy answers in a row), record the remote id under the lease, then hand the
  remote id to the process-wide poll timer (``polling.py``). A reclaimed task whose remote id is
  recent resumes polling it instead of paying for a second solve.
* **finish** (``_finish``): the one write that ends an attempt (complete, fail with or without a
  retry, expire, release), shielded from cancellation and retried while Redis is unreachable; fencing
  refuses it if the lease was lost meanwhile, and the task is then simply dropped. The retry
  decision is ``retry.py``'s.
* A run cancelled while polling (its task was cancelled) keeps its slot and its solve is polled to
  its end (``_drain``); on shutdown the runs get ``grace_s`` to finish, the rest are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Literal

from ..errors import (
    AccountError,
    LeaseLost,
    SolverBusy,
    SolverError,
    TaskCancelled,
    TaskRejected,
    Unsolvable,
)
from ..models import Result, Solution
from ._shared import Run, Shared, Stop, solver_provider
from .polling import PollScheduler
from .retry import Action, RetryPolicy

log = logging.getLogger("captcha_queue.worker")

#: Poll answers that mean the service no longer knows a remote id (a resume came too late).
_UNKNOWN_REMOTE = frozenset({"ERROR_WRONG_CAPTCHA_ID", "ERROR_WRONG_ID_FORMAT"})
#: Submit failures after which the service may have the task anyway (the answer was lost).
_SUBMIT_UNCERTAIN = frozenset({"TIMEOUT", "CONNECTION_ERROR"})


class Attempts:
    """Drives the runs of one worker, each from its claim to its final write."""

    def __init__(self, shared: Shared, poller: PollScheduler, policy: RetryPolicy) -> None:
        self._s = shared
        self._poller = poller
        self._policy = policy
        self._busy_streak = 0  # busy answers in a row on this account (any task of this process)
        self._finishing: set[asyncio.Task[Any]] = set()
        self._draining: set[asyncio.Task[None]] = set()
        self.finished = 0

    async def drive(self, run: Run) -> None:
        """Execute one claimed task, then finish it; never raises."""
        outcome: Solution | BaseException
        try:
            if self._s.stopping.is_set():
                raise Stop("release")
            outcome = await self._execute(run)
        except asyncio.CancelledError:
            if run.drop_reason == "shutdown":
                outcome = Stop("release")
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

    async def wind_down(self) -> None:
        """Shutdown: in-flight runs get ``grace_s`` to finish; the rest are released (their remote ids
        stay recorded for resume); drains are cancelled (their slots stay counted as ghosts)."""
        grace_s = self._s.config.grace_s
        runs = [r.task for r in self._s.runs.values() if r.task is not None]
        if runs:
            log.info("waiting up to %.1fs for %d in-flight tasks", grace_s, len(runs))
            await asyncio.wait(runs, timeout=grace_s)
        left = list(self._s.runs.values())
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

    # -- execute -------------------------------------------------------------------------------
    async def _execute(self, run: Run) -> Solution:
        claim = run.claim
        task = claim.task
        cfg = self._s.config
        remote_id: str | None = None
        elapsed_s = 0.0
        if claim.remote_id and claim.remote_submitted_at is not None:
            age_s = time.time() - claim.remote_submitted_at
            if age_s <= cfg.resume_window_s * cfg.time_scale:
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

    async def _poll(self, run: Run, remote_id: str) -> Solution:
        """Wait for the answer to ``remote_id`` on the process-wide poll timer."""
        task = run.claim.task
        first_s, interval_s = self._s.solver.poll_schedule(task.method, task.params)
        return await self._poller.wait_for(
            remote_id,
            task.method,
            task.params,
            first_poll_s=first_s,
            interval_s=interval_s,
            elapsed_s=time.monotonic() - run.remote_since,
        )

    async def _wait_for_limit(self, run: Run) -> None:
        """No solve without a known fleet limit: the task waits, claimed, until the account answered
        (released if this worker is paused meanwhile, expired at its deadline)."""
        run.stage = "slot"
        expires_at = run.claim.task.expires_at
        while not self._s.limit_known.is_set():
            if self._s.breaker.paused:
                raise Stop("release")
            wait_s = max(0.05, min(1.0, self._s.config.renew_period_s))
            if expires_at is not None:
                left_s = expires_at - time.time()
                if left_s <= 0:
                    raise Stop("expire")
                wait_s = min(wait_s, left_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._s.limit_known.wait()

    async def _take_slot(self, run: Run, *, resume: bool = False) -> None:
        if not self._s.limit_known.is_set():
            await self._wait_for_limit(run)
        limiter = self._s.limiter
        if limiter is None or limiter.holds(run.claim.task_id, run.claim.lease_token):
            return
        run.stage = "slot"
        timeout_s = None
        if run.claim.task.expires_at is not None:
            timeout_s = run.claim.task.expires_at - time.time()
            if timeout_s <= 0:
                raise Stop("expire")
        try:
            async with asyncio.timeout(timeout_s):
                await limiter.acquire(run.claim.task_id, run.claim.lease_token, resume=resume)
        except TimeoutError:
            raise Stop("expire") from None
        # This task leaves the buffer of claimed tasks waiting for a slot: the claim loop may
        # fetch one more (waking it only when a task *enters* the wait kept the buffer half used).
        run.stage = "submit"
        self._s.room.set()
        self._s.events.set_slots(limiter.used, limiter.effective)

    async def _submit(self, run: Run) -> str:
        """Submit (backing off while the service is busy), then record the remote id under the lease."""
        s = self._s
        task = run.claim.task
        busy_count = 0
        while True:
            if s.breaker.paused:
                raise Stop("release")
            if task.expires_at is not None and time.time() >= task.expires_at:
                raise Stop("expire")
            run.stage = "submit"
            run.at_service = True  # from here on a solve may exist even if the answer is lost
            try:
                remote_id = await s.solver.submit(task.method, task.params)
            except SolverBusy as exc:
                run.at_service = False
                s.events.solver_request("in", exc.code)
                busy_count += 1
                self._busy_streak += 1
                decision = self._policy.decide(
                    exc, attempt=run.claim.attempt, max_attempts=task.max_attempts, busy_count=busy_count
                )
                if s.limiter is not None:
                    s.limiter.release(task.id, run.claim.lease_token, outcome="busy")
                if self._busy_streak >= s.config.busy_pause_after:
                    await self._busy_pause(exc)
                    raise Stop("release") from None  # back to the queue, no attempt consumed
                s.events.retry("busy")
                log.debug("task %s: solver busy (%s); again in %.2fs", task.id, exc.code, decision.delay_s)
                await asyncio.sleep(decision.delay_s)
                await self._take_slot(run)
                continue
            except SolverError as exc:
                run.at_service = exc.code in _SUBMIT_UNCERTAIN
                s.events.solver_request("in", exc.code)
                raise
            s.events.solver_request("in", "OK")
            self._busy_streak = 0
            break
        run.submitted_at = time.monotonic()
        run.claim = await s.redis(lambda: s.queue.record_remote(run.claim, remote_id))
        log.debug("task %s submitted as remote id %s", task.id, remote_id)
        return remote_id

    async def _busy_pause(self, busy: SolverBusy) -> None:
        """Busy answers that do not clear (2captcha's ERROR_ZERO_BALANCE: no funds) pause the account
        for ``busy_pause_s``; its tasks go back to the queue."""
        streak, self._busy_streak = self._busy_streak, 0
        pause_s = self._s.config.busy_pause_s * self._s.config.time_scale
        reason = f"{streak} busy answers in a row ({busy.code}: {busy.message})"
        error = AccountError(busy.code, busy.message, pause_s=pause_s)
        await self._s.redis(lambda: self._s.pause_account(error, reason=reason), persist=True)

    # -- finish --------------------------------------------------------------------------------
    async def _finish(self, run: Run, outcome: Solution | BaseException) -> None:
        run.stage = "finish"
        s = self._s
        claim = run.claim
        slot_outcome: Literal["ok", "error"] = "error"
        try:
            if isinstance(outcome, Solution):
                result = await s.redis(
                    lambda: s.queue.complete(
                        claim, outcome, provider=solver_provider(s.solver), account=s.solver.account_ref
                    ),
                    persist=True,
                )
                slot_outcome = "ok"
                self._finished(run, result)
            elif isinstance(outcome, Stop) and outcome.how == "expire":
                self._finished(run, await s.redis(lambda: s.queue.expire(claim), persist=True))
            elif isinstance(outcome, Stop):
                await s.redis(lambda: s.queue.release(claim), persist=True)
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

    async def _after_error(self, run: Run, error: BaseException) -> None:
        s = self._s
        claim = run.claim
        decision = self._policy.decide(
            error, attempt=claim.attempt, max_attempts=claim.task.max_attempts, rng=s.rng
        )
        if decision.action is Action.DROP:
            log.info("task %s dropped: %s", claim.task_id, error)
            return
        if decision.action is Action.PAUSE:
            assert isinstance(error, AccountError)
            await s.redis(lambda: s.pause_account(error), persist=True)
            await s.redis(lambda: s.queue.release(claim), persist=True)
            return
        if decision.action in (Action.RETRY, Action.FRESH_SOLVE):
            retried = await s.redis(
                lambda: s.queue.fail(
                    claim,
                    error,
                    retry_in_s=max(decision.delay_s, 0.001),
                    provider=solver_provider(s.solver),
                    account=s.solver.account_ref,
                ),
                persist=True,
            )
            if retried is None:
                s.events.retry(error)
                log.debug("task %s: %s; retry in %.2fs", claim.task_id, decision.code, decision.delay_s)
            else:
                self._finished(run, retried)
            return
        if not isinstance(error, SolverError):
            log.error("task %s failed on an unexpected error", claim.task_id, exc_info=error)
        final = await s.redis(
            lambda: s.queue.fail(
                claim, error, provider=solver_provider(s.solver), account=s.solver.account_ref
            ),
            persist=True,
        )
        if final is not None:
            self._finished(run, final)

    def _finished(self, run: Run, result: Result) -> None:
        self.finished += 1
        self._s.events.task_finished(result)
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

    def _forget(self, run: Run, *, slot_outcome: Literal["ok", "error"]) -> None:
        s = self._s
        task_id = run.claim.task_id
        if s.runs.get(task_id) is run:
            del s.runs[task_id]
        if not s.drains(run):  # else the drain keeps the slot until the solve is over
            s.release_slot(run, slot_outcome)
        s.events.set_in_flight(len(s.runs))
        s.room.set()

    # -- the drain of a cancelled run ------------------------------------------------------------
    def _start_drain(self, run: Run) -> None:
        if not self._s.drains(run) or run.remote_id is None:
            return
        drain = asyncio.create_task(self._drain(run, run.remote_id), name=f"drain:{run.claim.task_id}")
        self._draining.add(drain)
        drain.add_done_callback(self._draining.discard)

    async def _drain(self, run: Run, remote_id: str) -> None:
        """Poll a cancelled task's solve to its end, then free its slot (no result is written)."""
        try:
            await self._poll(run, remote_id)
            run.at_service = False
        except (TaskRejected, Unsolvable):
            run.at_service = False
        except SolverError:
            pass  # unknown: the slot stays counted as a ghost until the solve must be over
        finally:
            self._s.release_slot(run)


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None

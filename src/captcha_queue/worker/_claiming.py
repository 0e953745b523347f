"""Claiming: the claim loop that turns queued tasks into runs of this worker.

It claims in batches as capacity frees up, blocking on Redis while the queue is empty. With a
fleet-wide solver limit (or while it is not known yet), only a small buffer of claimed tasks
(``buffer``) waits for a slot, so claimed-but-idle tasks never pile up in one process while others
starve; a run leaving that buffer, or ending, wakes the loop (``Shared.room``). Nothing is claimed
while this worker's account is paused. ``stop()`` ends claiming; a task claimed while stopping is
released by its run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ..errors import CaptchaQueueError, RedisUnavailable
from ..models import Claim
from ._shared import REDIS_BACKOFF, Run, Shared

log = logging.getLogger("captcha_queue.worker")


class Claiming:
    """Claims tasks for one worker and starts a run (``drive``) for each."""

    def __init__(
        self,
        shared: Shared,
        *,
        drive: Callable[[Run], Coroutine[Any, Any, None]],
        drop: Callable[[Run, str], None],
    ) -> None:
        self._s = shared
        self._drive = drive
        self._drop = drop

    def stop(self) -> None:
        """No new claims: a claim blocked on Redis returns at once."""
        if not self._s.stopping.is_set():
            log.info("worker %s stopping: no new claims, %d in flight", self._s.worker_id, len(self._s.runs))
        self._s.stopping.set()
        self._s.room.set()

    def capacity(self) -> int:
        s = self._s
        room = s.config.concurrency - len(s.runs)
        if s.limiter is not None or not s.limit_known.is_set():
            waiting = sum(1 for r in s.runs.values() if r.stage in ("claimed", "slot"))
            room = min(room, s.config.buffer - waiting)
        return min(room, s.config.claim_batch_max)

    async def claim_loop(self) -> None:
        s = self._s
        failures = 0
        while not s.stopping.is_set():
            if s.breaker.paused:
                # Nothing is claimed while this worker's account (or the fleet) is paused: the claim
                # script only knows the fleet's pause. Look again at least once a second.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.05, min(1.0, s.config.renew_period_s))):
                        await s.breaker.wait_resumed()
                with contextlib.suppress(CaptchaQueueError):  # nothing supervises this loop
                    await s.breaker.refresh()
                continue
            count = self.capacity()
            if count <= 0:
                s.room.clear()
                await s.room.wait()
                continue
            try:
                claims = await s.queue.claim(
                    s.worker_id,
                    count,
                    s.config.lease_s,
                    block_s=s.config.claim_block_s,
                    stop=s.stopping,
                )
            except RedisUnavailable as exc:
                if s.limiter is not None:
                    s.limiter.note_redis_failure()
                failures += 1
                delay = REDIS_BACKOFF.delay_s(failures, s.rng) + 0.05
                log.warning("claim: %s; retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            except Exception:
                # Nothing supervises this loop: an unexpected error must not end claiming for good
                # while the process looks alive (found by the chaos suite's network faults).
                failures += 1
                delay = REDIS_BACKOFF.delay_s(failures, s.rng) + 0.05
                log.exception("claim failed unexpectedly; retrying in %.2fs", delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            if claims:
                s.breaker.note_claimed()
            for claim in claims:
                self.start_run(claim)
            if claims and s.stopping.is_set():
                log.debug("claimed %d tasks while stopping: they are released", len(claims))

    def start_run(self, claim: Claim) -> None:
        s = self._s
        stale = s.runs.get(claim.task_id)
        if stale is not None:
            # This worker claimed a task it still runs: the old claim's lease lapsed (Redis was cut,
            # the renewals were late). The old run stops; a submit it had in flight stays counted as
            # a ghost of its slot, and the new claim takes (or, resuming the same remote id, adopts)
            # a slot of its own: never the old claim's, which would let a second solve run uncounted.
            self._drop(stale, "lease lost")
        run = Run(claim)
        s.runs[claim.task_id] = run
        s.events.task_started(claim)
        s.events.set_in_flight(len(s.runs))
        run.task = asyncio.create_task(self._drive(run), name=f"task:{claim.task_id}")

"""The leases of the tasks this worker holds, and what losing one does to its run.

Every ``renew_period_s`` (``renew_loop``): check the data set (a lost data set drops every run), renew
the leases of the runs still going, drop the runs whose lease was lost or whose task was cancelled,
renew the slots, heartbeat the registry, refresh the account pause. A dropped run (``drop``) is
cancelled at once and its slot handed back, so the next renewal does not register it again; a
cancelled task's run that is polling keeps its slot while its solve is drained (``_attempt``).
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import RedisUnavailable
from ._shared import Run, Shared
from .registry import WorkerRegistry

log = logging.getLogger("captcha_queue.worker")


class Leases:
    """Keeps the leases of one worker's runs alive and drops the runs that lost theirs."""

    def __init__(self, shared: Shared, registry: WorkerRegistry) -> None:
        self._s = shared
        self._registry = registry

    async def renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self._s.config.renew_period_s)
            await self.renew_once()

    async def renew_once(self) -> None:
        s = self._s
        try:
            loss = await s.queue.check_data_loss()
            if loss is not None:
                held = list(s.runs.values())
                log.critical(
                    "%s; the %d tasks this worker holds cannot be finished: dropped (their solves at "
                    "the service stay counted against the fleet limit until they must be over)",
                    loss.describe(),
                    len(held),
                )
                for run in held:
                    run.data_lost = True
                    self.drop(run, "data lost")
            runs = [r for r in s.runs.values() if r.stage != "finish" and r.drop_reason is None]
            if runs:
                outcome = await s.queue.renew([r.claim for r in runs], s.config.lease_s)
                renewed = {r.claim.task_id: r for r in runs}  # not a newer claim of the task
                for task_id, reason in [(t, "lease lost") for t in outcome.lost] + [
                    (t, "cancelled") for t in outcome.cancelled
                ]:
                    gone = renewed.get(task_id)
                    if gone is not None:
                        self.drop(gone, reason)
                if outcome.lost or outcome.cancelled:
                    log.info(
                        "renew: %d leases lost, %d tasks cancelled", len(outcome.lost), len(outcome.cancelled)
                    )
            if s.limiter is not None:
                await s.limiter.renew()
                s.events.set_slots(s.limiter.used, s.limiter.effective)
            await self._registry.heartbeat(len(s.runs))
            await s.breaker.refresh()
        except RedisUnavailable as exc:
            if s.limiter is not None:
                s.limiter.note_redis_failure()
            log.warning("renew: %s (leases are renewed again next period)", exc)

    def drop(self, run: Run, reason: str) -> None:
        """Stop a run whose task this worker may no longer finish (its slot handed back at once,
        so the renewal that follows does not register it again).

        A cancelled task's solve runs on at the service and nobody else will poll it: the slot is
        kept, and the remote id polled until the service is done with it (the attempt's drain)."""
        if run.stage == "finish" or run.task is None:
            return
        run.drop_reason = reason
        if not self._s.drains(run):
            self._s.release_slot(run)
        run.task.cancel()

"""Refunds, the worker's side: send the verdicts producers queued for this worker's account.

Every ``renew_period_s`` (and at once after a full batch), unless the account is paused, take the
report requests queued for this worker's account ref (``AsyncCaptchaQueue.take_reports``, under a
lease of ``lease_s``), call ``Solver.report`` for each, and ack it. A worker that dies between the
take and the ack leaves its requests to be taken again when their lease passes: delivery is at least
once (queue/_reports.py).
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import CaptchaQueueError, RedisUnavailable
from ..models import ReportRequest
from ._shared import Shared

log = logging.getLogger("captcha_queue.worker")

#: Requests taken per call.
REPORT_BATCH = 50


class ReportSender:
    """Sends the report requests of one worker's account to the service."""

    def __init__(self, shared: Shared) -> None:
        self._s = shared
        self.sent = 0

    async def run(self) -> None:
        while True:
            try:
                full = await self.send_once()
            except RedisUnavailable as exc:
                log.warning("reports: %s (tried again next period)", exc)
                full = False
            if not full:
                await asyncio.sleep(self._s.config.renew_period_s)

    async def send_once(self) -> bool:
        """One batch; True when it was full (more may be waiting). Nothing is taken while the account
        is paused (a wrong key, a banned IP would refuse the report): the requests wait for its end."""
        s = self._s
        if s.breaker.account_state is not None:
            return False
        requests = await s.queue.take_reports(s.solver.account_ref, REPORT_BATCH, s.config.lease_s)
        for request in requests:
            await self._send(request)
        return len(requests) >= REPORT_BATCH

    async def _send(self, request: ReportRequest) -> None:
        s = self._s
        verdict = "good" if request.correct else "bad"
        outcome = "sent"
        try:
            await s.solver.report(request.remote_id, request.correct)
        except CaptchaQueueError as exc:
            # Solver.report logs the service's refusals itself; anything else is this worker's.
            outcome = "error"
            log.warning("report on task %s (%s) failed: %s", request.id, verdict, exc)
        s.events.report(request.account, verdict, outcome)
        log.info(
            "task %s reported %s to account %s (remote id %s)",
            request.id,
            verdict,
            request.account,
            request.remote_id,
        )
        self.sent += 1
        await s.redis(lambda: s.queue.ack_report(request))

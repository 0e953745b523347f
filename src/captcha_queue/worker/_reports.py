"""Refunds, the worker's side: send the verdicts producers queued for this worker's account.

Every ``renew_period_s`` (and at once after a full batch), unless the account is paused for its key
or its IP, take the report requests queued for this worker's account ref
(``AsyncCaptchaQueue.take_reports``, under a lease of ``lease_s``), call ``Solver.report`` for each,
and ack it. A worker that dies between the take and the ack leaves its requests to be taken again
when their lease passes: delivery is at least once (queue/_reports.py).

Every worker also sweeps, now and then, the requests of every account ref older than
``report_expire_s`` (``AsyncCaptchaQueue.expire_reports``): those of an account no worker serves any
more (removed, its key rotated) would otherwise wait forever. Each one dropped is counted once, by the
worker whose sweep dropped it (``outcome="expired"``), and logged.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..errors import CaptchaQueueError, RedisUnavailable
from ..models import ReportRequest
from ._shared import Shared

log = logging.getLogger("captcha_queue.worker")

#: Requests taken per call.
REPORT_BATCH = 50
#: Pauses that leave the key working: no money (a paused 2captcha or CapSolver account still reports,
#: and the refund is what pays for its next solve) or busy answers that did not clear. Any other pause
#: (a wrong key, a banned IP, the operator's) keeps the requests waiting: the service would refuse them.
REPORTS_SENT_WHILE_PAUSED = frozenset(
    {
        "ERROR_ZERO_BALANCE",
        "ERROR_NO_SLOT_AVAILABLE",
        "ERROR_RATE_LIMIT",
        "ERROR_TOO_MUCH_REQUESTS",
        "MAX_USER_TURN",
        "HTTP_429",
    }
)


class ReportSender:
    """Sends the report requests of one worker's account to the service."""

    def __init__(self, shared: Shared) -> None:
        self._s = shared
        self.sent = 0
        self.expired = 0
        self._next_sweep = 0.0  # monotonic

    async def run(self) -> None:
        while True:
            try:
                full = await self.send_once()
                await self._sweep_if_due()
            except RedisUnavailable as exc:
                log.warning("reports: %s (tried again next period)", exc)
                full = False
            if not full:
                await asyncio.sleep(self._s.config.renew_period_s)

    async def _sweep_if_due(self) -> None:
        """Drop requests older than ``report_expire_s`` (every ref's), at most every tenth of it."""
        config = self._s.config
        max_age_s = config.report_expire_s * config.time_scale
        if max_age_s <= 0 or time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + max(config.renew_period_s, min(max_age_s / 10, 600.0))
        await self.expire(max_age_s)

    async def expire(self, max_age_s: float) -> int:
        """One sweep: drop (and count) every request older than ``max_age_s``; returns how many."""
        s = self._s
        dropped = await s.queue.expire_reports(max_age_s)
        for request in dropped:
            verdict = "good" if request.correct else "bad"
            s.events.report(request.account, verdict, "expired")
            log.warning(
                "report on task %s (%s) for account %s dropped unsent: older than %gs (no worker of that "
                "account sent it)",
                request.id,
                verdict,
                request.account,
                max_age_s,
            )
        self.expired += len(dropped)
        return len(dropped)

    async def send_once(self) -> bool:
        """One batch; True when it was full (more may be waiting). Nothing is taken while the account
        is paused for its key or IP (the service would refuse the report): the requests wait for its
        end. A pause for money or busy answers does not stop reports (``REPORTS_SENT_WHILE_PAUSED``)."""
        s = self._s
        pause = s.breaker.account_state
        if pause is not None and pause.code not in REPORTS_SENT_WHILE_PAUSED:
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

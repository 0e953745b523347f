"""The account circuit breaker: an account error pauses every worker of that solver account.

An ``AccountError`` (wrong or unknown key, no threads, IP not allowed, IP banned) means no task can be
solved with this account until something changes outside the queue, so retrying tasks would only burn
their attempts. The worker that sees it writes the account's pause (``keys.account_paused(ref)``:
reason, code, since, and for IP_BANNED an end time 5 minutes out, plus who set it: the worker id, the
account name and the key's fingerprint, never the key) and indexes it in ``keys.paused_accounts``.
Workers of that account (``ref``: the name and the key's fingerprint) claim nothing while it holds;
workers with another key go on. Tasks a worker already holds but has not sent are released without
consuming an attempt. The runtime also pauses its account, for a while, after a run of busy answers
that does not clear (``ERROR_ZERO_BALANCE`` where it means "no funds").

The pauses are read and written through the queue's admin API (``pause``, ``pause_state``,
``probe_turn``, ``resume``): the same script path as the operator's ``captcha-queue pause``.

The namespace-wide pause (``keys.paused``, ``captcha-queue pause``) is the operator's: the claim
script hands out nothing while it holds, to every worker.

An account pause is lifted by ``captcha-queue resume`` (every pause; ``--account`` one account's), by
its ``until_ms`` passing, or by an account probe: once per probe interval, one worker of the account
(chosen atomically: ``AsyncCaptchaQueue.probe_turn``) asks the service for the account's threads; if
that works, it lifts the pause it probed (``resume`` with its since_ms), and blocked claimers wake at
once. A timed pause is not
probed: it ends by itself.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..errors import AccountError, CaptchaQueueError, RedisUnavailable, SolverError
from ..models import AccountInfo, Pause
from ..solvers.base import account_ref

if TYPE_CHECKING:
    from ..queue import AsyncCaptchaQueue

__all__ = ["IP_BAN_PAUSE_S", "AccountBreaker"]

log = logging.getLogger("captcha_queue.worker.breaker")

#: The service lifts an IP ban by itself after 5 minutes.
IP_BAN_PAUSE_S = 300.0
IP_BAN_CODES = frozenset({"IP_BANNED", "ERROR_IP_BANNED"})


class AccountBreaker:
    """One process's side of its account's pause (and of the operator's, namespace-wide).

    ``paused`` is this process's view (either pause), refreshed by ``refresh()`` (the worker calls it
    every renew period, and while paused) and set at once by ``trip``. ``run()`` is the probe loop (a
    background task). ``on_change`` hears the namespace pause change, ``on_account_change`` the
    account's.
    """

    def __init__(
        self,
        queue: AsyncCaptchaQueue,
        account_info: Callable[[], Awaitable[AccountInfo]],
        *,
        account: str = "default",
        key_fingerprint: str | None = None,
        worker_id: str = "",
        probe_every_s: float = 60.0,
        ip_ban_pause_s: float = IP_BAN_PAUSE_S,
        on_change: Callable[[bool], None] | None = None,
        on_account_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._queue = queue
        self._account_info = account_info
        self.account = account
        self.ref = account_ref(account, key_fingerprint)
        self.key_fingerprint = key_fingerprint
        self.worker_id = worker_id
        self.probe_every_s = probe_every_s
        self.ip_ban_pause_s = ip_ban_pause_s
        self._on_change = on_change
        self._on_account_change = on_account_change
        self.fleet_state: Pause | None = None
        self.account_state: Pause | None = None
        self._resumed = asyncio.Event()
        self._resumed.set()
        self.probes = 0

    @property
    def state(self) -> Pause | None:
        """The pause that stops this worker: its account's, else the namespace's."""
        return self.account_state or self.fleet_state

    @property
    def paused(self) -> bool:
        return self.state is not None

    async def wait_resumed(self) -> None:
        await self._resumed.wait()

    async def trip(self, error: AccountError, *, reason: str | None = None) -> bool:
        """Pause this worker's account for ``error``. Returns True if this call started the pause."""
        pause_s = error.pause_s
        if pause_s is None and error.code in IP_BAN_CODES:
            pause_s = self.ip_ban_pause_s
        if pause_s is not None:  # a length the service suggested: at least 1 ms; NaN or inf: open-ended
            pause_s = max(0.001, pause_s) if math.isfinite(pause_s) else None
        reason = (reason or f"account error {error.code}: {error.message}")[:300]
        pause, started = await self._queue.pause(
            reason, pause_s, account=self.ref, code=error.code, worker=self.worker_id or None
        )
        if started:
            log.warning(
                "account %s paused: %s%s",
                self.ref,
                reason,
                f" for {pause_s:g}s" if pause_s is not None else "",
            )
        self._set(self.fleet_state, pause)
        # Read back what is actually stored (another worker's pause may have been there first).
        await self.refresh()
        return started

    async def refresh(self) -> Pause | None:
        """Re-read both pauses (an operator may have resumed, or paused; another worker may have
        paused the account)."""
        state = await self._queue.pause_state(self.ref)
        self._set(state.fleet, state.accounts[0] if state.accounts else None)
        return self.state

    def note_claimed(self) -> None:
        """A claim handed out tasks: the namespace is not paused any more (the claim script says)."""
        if self.fleet_state is not None:
            self._set(None, self.account_state)

    def _set(self, fleet: Pause | None, account: Pause | None) -> None:
        was_fleet, was_account = self.fleet_state is not None, self.account_state is not None
        self.fleet_state, self.account_state = fleet, account
        if self.paused:
            self._resumed.clear()
        else:
            self._resumed.set()
        if was_fleet != (fleet is not None):
            log.info("fleet %s", f"paused ({fleet.reason})" if fleet else "resumed")
            if self._on_change is not None:
                self._on_change(fleet is not None)
        if was_account != (account is not None):
            log.info("account %s %s", self.ref, f"paused ({account.reason})" if account else "resumed")
            if self._on_account_change is not None:
                self._on_account_change(account is not None)

    async def probe_once(self) -> bool:
        """If it is this process's turn, probe the account; lift its pause if it works.

        Returns True if the pause was lifted by this call.
        """
        since_ms = await self._queue.probe_turn(self.ref, self.probe_every_s)
        if since_ms is None:
            return False
        self.probes += 1
        try:
            info = await self._account_info()
        except AccountError as exc:
            log.info("account probe: still failing (%s)", exc.code)
            return False
        except SolverError as exc:
            log.info("account probe inconclusive (%s); account %s stays paused", exc.code, self.ref)
            return False
        if info.threads is not None and info.threads <= 0:
            log.info("account probe: the account has no threads; it stays paused")
            return False
        lifted = await self._queue.resume(self.ref, since_ms=since_ms)
        if lifted:
            log.warning("account probe succeeded: account %s resumed", self.ref)
            self._set(self.fleet_state, None)
        return bool(lifted)

    async def run(self) -> None:
        """While the account is paused (open-ended), probe once per interval (its workers share the
        turn); until cancelled."""
        tick_s = max(0.01, min(self.probe_every_s / 4, 5.0))
        while True:
            await asyncio.sleep(tick_s)
            if self.account_state is None or self.account_state.until_ms is not None:
                continue
            try:
                await self.probe_once()
                await self.refresh()
            except RedisUnavailable as exc:
                log.debug("breaker: %s", exc)
            except CaptchaQueueError as exc:
                log.warning("account probe failed: %s", exc)

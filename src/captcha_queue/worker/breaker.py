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

The namespace-wide pause (``keys.paused``, ``captcha-queue pause``) is the operator's: the claim
script hands out nothing while it holds, to every worker.

An account pause is lifted by ``captcha-queue resume`` (every pause; ``--account`` one account's), by
its ``until_ms`` passing, or by an account probe: once per probe interval, one worker of the account
(chosen atomically by ``probePause``) asks the service for the account's threads; if that works, it
lifts the pause it probed (``liftPause``), and blocked claimers wake at once. A timed pause is not
probed: it ends by itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from ..errors import AccountError, CaptchaQueueError, RedisUnavailable, SolverError
from ..models import AccountInfo
from ..solvers.base import account_ref
from ..store.connection import redis_errors_async
from ..store.keys import Keys
from ..store.scripts import load_scripts

__all__ = ["IP_BAN_PAUSE_S", "AccountBreaker", "PauseState", "read_pause_state"]

log = logging.getLogger("captcha_queue.worker.breaker")

#: The service lifts an IP ban by itself after 5 minutes.
IP_BAN_PAUSE_S = 300.0
IP_BAN_CODES = frozenset({"IP_BANNED", "ERROR_IP_BANNED"})


@dataclass(frozen=True)
class PauseState:
    reason: str
    code: str | None
    since_ms: int | None
    until_ms: int | None
    worker: str | None = None  # who set an account pause, and on which account (name, key fingerprint)
    account: str | None = None
    key: str | None = None


_FIELDS = ("reason", "code", "since_ms", "until_ms", "worker", "account", "key")


async def read_pause_state(
    client: aioredis.Redis, keys: Keys, account: str | None = None
) -> PauseState | None:
    """The namespace's pause (``account``: that account's, by its ref) if one is in force."""
    key = keys.paused if account is None else keys.account_paused(account)
    async with redis_errors_async(client), client.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.hmget(key, *_FIELDS)
        (seconds, micros), fields = await pipe.execute()
    return _pause(fields, int(seconds) * 1000 + int(micros) // 1000)


def _pause(fields: list[object], now_ms: int) -> PauseState | None:
    """A stored pause from its ``_FIELDS`` (None if absent or past its until_ms)."""
    reason, code, since, until, worker, account, key = (_text(v) if v is not None else None for v in fields)
    if reason is None and since is None:
        return None
    until_ms = _ms(until)  # unreadable: open-ended, as the claim script reads it
    if until_ms is not None and until_ms <= now_ms:
        return None
    since_ms = _ms(since)
    return PauseState(reason or "", code, since_ms, until_ms, worker or None, account or None, key or None)


class AccountBreaker:
    """One process's side of its account's pause (and of the operator's, namespace-wide).

    ``paused`` is this process's view (either pause), refreshed by ``refresh()`` (the worker calls it
    every renew period, and while paused) and set at once by ``trip``. ``run()`` is the probe loop (a
    background task). ``on_change`` hears the namespace pause change, ``on_account_change`` the
    account's.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
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
        self._client = client
        self._keys = keys
        self._scripts = load_scripts()
        self._account_info = account_info
        self.account = account
        self.ref = account_ref(account, key_fingerprint)
        self._account_key = keys.account_paused(self.ref)
        self.key_fingerprint = key_fingerprint
        self.worker_id = worker_id
        self.probe_every_s = probe_every_s
        self.ip_ban_pause_s = ip_ban_pause_s
        self._on_change = on_change
        self._on_account_change = on_account_change
        self.fleet_state: PauseState | None = None
        self.account_state: PauseState | None = None
        self._resumed = asyncio.Event()
        self._resumed.set()
        self.probes = 0

    @property
    def state(self) -> PauseState | None:
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
        pause_ms = "" if pause_s is None else str(max(1, int(pause_s * 1000)))
        reason = (reason or f"account error {error.code}: {error.message}")[:300]
        async with redis_errors_async(self._client):
            started, since_ms = await self._scripts.pauseFleet(
                self._client,
                [self._account_key, self._keys.paused_accounts],
                [reason, error.code, pause_ms, self.ref, *self._who()],
            )
        if started:
            log.warning(
                "account %s paused: %s%s",
                self.ref,
                reason,
                f" for {pause_s:g}s" if pause_s is not None else "",
            )
        until_ms = int(since_ms) + int(pause_s * 1000) if pause_s is not None and started else None
        who = (self.worker_id or None, self.account, self.key_fingerprint)
        self._set(self.fleet_state, PauseState(reason, error.code, int(since_ms), until_ms, *who))
        # Read back what is actually stored (another worker's pause may have been there first).
        await self.refresh()
        return bool(started)

    def _who(self) -> list[str]:
        """Stored with a pause: who set it, on which account (the key's fingerprint, never the key)."""
        return ["worker", self.worker_id, "account", self.account, "key", self.key_fingerprint or ""]

    async def refresh(self) -> PauseState | None:
        """Re-read both pauses (an operator may have resumed, or paused; another worker may have
        paused the account)."""
        async with redis_errors_async(self._client), self._client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hmget(self._keys.paused, *_FIELDS)
            pipe.hmget(self._account_key, *_FIELDS)
            (seconds, micros), fleet, account = await pipe.execute()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        self._set(_pause(fleet, now_ms), _pause(account, now_ms))
        return self.state

    def note_claimed(self) -> None:
        """A claim handed out tasks: the namespace is not paused any more (the claim script says)."""
        if self.fleet_state is not None:
            self._set(None, self.account_state)

    def _set(self, fleet: PauseState | None, account: PauseState | None) -> None:
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
        async with redis_errors_async(self._client):
            verdict, since_ms = await self._scripts.probePause(
                self._client, [self._account_key], [max(1, int(self.probe_every_s * 1000))]
            )
        if verdict == -1:
            self._set(self.fleet_state, None)
            return False
        if verdict != 1:
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
        async with redis_errors_async(self._client):
            lifted = await self._scripts.liftPause(
                self._client,
                [self._account_key, self._keys.wake, self._keys.paused_accounts],
                [str(int(since_ms)), self.ref],
            )
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


def _ms(text: str | None) -> int | None:
    try:
        return int(float(text)) if text else None
    except (ValueError, OverflowError):  # a value someone else wrote: never a crash of the worker
        return None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

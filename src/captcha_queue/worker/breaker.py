"""The account circuit breaker: one bad key or banned IP pauses every worker of the namespace.

An ``AccountError`` (wrong or unknown key, no threads, IP not allowed, IP banned) means no task can be
solved until something changes outside the queue, so retrying tasks would only burn their attempts.
The worker that sees it writes ``keys.paused`` (reason, code, since, and for IP_BANNED an end time
5 minutes out); the claim script then hands out nothing, queued tasks stay queued and nothing is
failed. Tasks a worker already holds but has not sent are released without consuming an attempt.

The pause is lifted by ``captcha-queue resume`` (deleting the hash), by its ``until_ms`` passing, or
by an account probe: once per probe interval, one worker of the fleet (chosen atomically by
``probePause``) asks the service for the account's threads; if that works, it lifts the pause it
probed (``liftPause``), and blocked claimers wake at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from ..connection import redis_errors_async
from ..errors import AccountError, CaptchaQueueError, RedisUnavailable, SolverError
from ..keys import Keys
from ..models import AccountInfo
from ..scripts import load_scripts

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


async def read_pause_state(client: aioredis.Redis, keys: Keys) -> PauseState | None:
    """The fleet's pause if one is in force (a pause past its until_ms is not)."""
    async with redis_errors_async(client), client.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.hmget(keys.paused, "reason", "code", "since_ms", "until_ms")
        (seconds, micros), fields = await pipe.execute()
    reason, code, since, until = (_text(v) if v is not None else None for v in fields)
    if reason is None and since is None:
        return None
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    until_ms = int(float(until)) if until else None
    if until_ms is not None and until_ms <= now_ms:
        return None
    return PauseState(reason or "", code, int(float(since)) if since else None, until_ms)


class AccountBreaker:
    """One process's side of the fleet-wide pause.

    ``paused`` is this process's view, refreshed by ``refresh()`` (the worker calls it every renew
    period) and set at once by ``trip``. ``run()`` is the probe loop (a background task).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        account_info: Callable[[], Awaitable[AccountInfo]],
        *,
        probe_every_s: float = 60.0,
        ip_ban_pause_s: float = IP_BAN_PAUSE_S,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._client = client
        self._keys = keys
        self._scripts = load_scripts()
        self._account_info = account_info
        self.probe_every_s = probe_every_s
        self.ip_ban_pause_s = ip_ban_pause_s
        self._on_change = on_change
        self.state: PauseState | None = None
        self._resumed = asyncio.Event()
        self._resumed.set()
        self.probes = 0

    @property
    def paused(self) -> bool:
        return self.state is not None

    async def wait_resumed(self) -> None:
        await self._resumed.wait()

    async def trip(self, error: AccountError) -> bool:
        """Pause the fleet for ``error``. Returns True if this call started the pause."""
        pause_s = error.pause_s
        if pause_s is None and error.code in IP_BAN_CODES:
            pause_s = self.ip_ban_pause_s
        pause_ms = "" if pause_s is None else str(max(1, int(pause_s * 1000)))
        reason = f"account error {error.code}: {error.message}"[:300]
        async with redis_errors_async(self._client):
            started, since_ms = await self._scripts.pauseFleet(
                self._client, [self._keys.paused], [reason, error.code, pause_ms]
            )
        if started:
            log.warning("fleet paused: %s%s", reason, f" for {pause_s:g}s" if pause_s is not None else "")
        state = PauseState(reason, error.code, int(since_ms), None)
        if pause_s is not None and started:
            state = PauseState(reason, error.code, int(since_ms), int(since_ms) + int(pause_s * 1000))
        self._set(state)
        # Read back what is actually stored (another worker's pause may have been there first).
        await self.refresh()
        return bool(started)

    async def refresh(self) -> PauseState | None:
        """Re-read the fleet's pause (an operator may have resumed, or paused)."""
        self._set(await read_pause_state(self._client, self._keys))
        return self.state

    def note_claimed(self) -> None:
        """A claim handed out tasks: the fleet is not paused any more."""
        if self.state is not None:
            self._set(None)

    def _set(self, state: PauseState | None) -> None:
        was = self.paused
        self.state = state
        if state is None:
            self._resumed.set()
        else:
            self._resumed.clear()
        if was != self.paused:
            log.info("fleet %s", f"paused ({state.reason})" if state else "resumed")
            if self._on_change is not None:
                self._on_change(self.paused)

    async def probe_once(self) -> bool:
        """If it is this process's turn, probe the account; lift the pause if it works.

        Returns True if the pause was lifted by this call.
        """
        async with redis_errors_async(self._client):
            verdict, since_ms = await self._scripts.probePause(
                self._client, [self._keys.paused], [max(1, int(self.probe_every_s * 1000))]
            )
        if verdict == -1:
            self._set(None)
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
            log.info("account probe inconclusive (%s); the fleet stays paused", exc.code)
            return False
        if info.threads is not None and info.threads <= 0:
            log.info("account probe: the account has no threads; the fleet stays paused")
            return False
        async with redis_errors_async(self._client):
            lifted = await self._scripts.liftPause(
                self._client, [self._keys.paused, self._keys.wake], [str(int(since_ms))]
            )
        if lifted:
            log.warning("account probe succeeded: fleet resumed")
            self._set(None)
        return bool(lifted)

    async def run(self) -> None:
        """While paused, probe once per interval (the fleet shares the turn); until cancelled."""
        tick_s = max(0.01, min(self.probe_every_s / 4, 5.0))
        while True:
            await asyncio.sleep(tick_s)
            if not self.paused:
                continue
            try:
                await self.probe_once()
                await self.refresh()
            except RedisUnavailable as exc:
                log.debug("breaker: %s", exc)
            except CaptchaQueueError as exc:
                log.warning("account probe failed: %s", exc)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

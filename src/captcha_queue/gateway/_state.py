"""What every request of one gateway process shares (``Gateway``), found on the app as ``GATEWAY_KEY``."""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from aiohttp import web

from ..queue._producer import AsyncCaptchaQueue
from ._config import GatewaySettings
from ._ids import IdMinter
from ._keys import KeyCache

__all__ = ["BALANCE_CACHE_S", "GATEWAY_KEY", "THREADS_CACHE_S", "Gateway"]

#: How long threadsinfo's fleet view is reused in a process (it runs the stats script).
THREADS_CACHE_S = 1.0
#: How long getbalance's fleet view is reused in a process (it reads every worker's registration).
BALANCE_CACHE_S = 1.0
#: A client key that names no account (its tasks go to whichever account routing picks).
_NO_ACCOUNT = "default"


class Gateway:
    """What every request of one process shares. Nothing here is state a second process needs."""

    def __init__(self, settings: GatewaySettings, client: aioredis.Redis, *, owns_client: bool) -> None:
        self.settings = settings
        self.client = client
        self.owns_client = owns_client
        self.keys = KeyCache(client, settings.key_cache_s)
        self._queues: dict[str, AsyncCaptchaQueue] = {}
        self._minters: dict[str, IdMinter] = {}
        self._threads: dict[tuple[str, str], tuple[float, int, int]] = {}
        self._balances: dict[str, tuple[float, dict[str, tuple[float, float]]]] = {}

    def queue(self, namespace: str) -> AsyncCaptchaQueue:
        queue = self._queues.get(namespace)
        if queue is None:
            queue = self._queues[namespace] = AsyncCaptchaQueue(
                self.client,
                namespace=namespace,
                allow_unknown_methods=self.settings.accept_unknown_methods,
            )
        return queue

    def minter(self, namespace: str) -> IdMinter:
        minter = self._minters.get(namespace)
        if minter is None:
            minter = self._minters[namespace] = IdMinter(self.client, self.queue(namespace).keys)
        return minter

    async def threads(self, namespace: str, account: str) -> tuple[int, int]:
        """(limit, in use) of the account's fleet-wide solver slots; the limit is 0 while unknown."""
        now = time.monotonic()
        cached = self._threads.get((namespace, account))
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        stats = await self.queue(namespace).stats(account)
        limit, used = stats.solver_slots_limit or 0, stats.solver_slots_used
        self._threads[(namespace, account)] = (now + THREADS_CACHE_S, limit, used)
        return limit, used

    async def balance(self, namespace: str, account: str) -> float:
        """What ``getbalance`` answers: the balance live workers last read for ``account`` when they
        know it; for a key that names no account (``default``, unknown to the workers), the sum over
        every account they know; else (no worker has read a balance) the configured ``balance``."""
        now = time.monotonic()
        cached = self._balances.get(namespace)
        if cached is not None and cached[0] > now:
            known = cached[1]
        else:
            known = await self.queue(namespace).account_balances()
            self._balances[namespace] = (now + BALANCE_CACHE_S, known)
        if account in known:
            return known[account][0]
        if account == _NO_ACCOUNT and known:
            return round(sum(balance for balance, _ in known.values()), 6)
        return self.settings.balance

    async def aclose(self) -> None:
        for queue in self._queues.values():
            await queue.aclose()
        self._queues.clear()
        if self.owns_client:
            await self.client.aclose()


GATEWAY_KEY = web.AppKey("gateway", Gateway)

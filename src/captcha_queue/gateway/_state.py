"""What every request of one gateway process shares (``Gateway``), found on the app as ``GATEWAY_KEY``."""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from aiohttp import web

from ..errors import CaptchaQueueError
from ..queue._producer import AsyncCaptchaQueue
from ..webhooks import WebhookDeliverer, WebhookSettings
from ._config import GatewaySettings
from ._ids import IdMinter
from ._keys import KeyCache, list_keys

__all__ = ["BALANCE_CACHE_S", "GATEWAY_KEY", "THREADS_CACHE_S", "WEBHOOK_GRACE_S", "Gateway"]

#: How long threadsinfo's fleet view is reused in a process (it runs the stats script).
THREADS_CACHE_S = 1.0
#: How long getbalance's fleet view is reused in a process (it reads every worker's registration).
BALANCE_CACHE_S = 1.0
#: A client key that names no account (its tasks go to whichever account routing picks).
_NO_ACCOUNT = "default"
#: How long sends in flight may finish when the gateway stops (the rest are sent again by a deliverer).
WEBHOOK_GRACE_S = 2.0

log = logging.getLogger("captcha_queue.gateway")


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
        self._deliverers: dict[str, WebhookDeliverer] = {}
        self._webhook_settings = WebhookSettings(
            secret=settings.webhook_secret, allow_private_targets=settings.allow_private_targets
        )

    def queue(self, namespace: str) -> AsyncCaptchaQueue:
        queue = self._queues.get(namespace)
        if queue is None:
            queue = self._queues[namespace] = AsyncCaptchaQueue(
                self.client,
                namespace=namespace,
                allow_unknown_methods=self.settings.accept_unknown_methods,
                allow_private_targets=self.settings.allow_private_targets,
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

    async def deliver_webhooks(self, namespace: str) -> None:
        """Make sure this process delivers ``namespace``'s webhooks (one deliverer per namespace, while
        the ``webhooks`` setting is on)."""
        if not self.settings.webhooks or namespace in self._deliverers:
            return
        if not self._deliverers and self._webhook_settings.secret is None:
            log.warning("pingbacks are sent unsigned: CAPTCHA_QUEUE_WEBHOOK_SECRET is not set")
        deliverer = WebhookDeliverer(
            self.client, namespace=namespace, settings=self._webhook_settings, warn_unsigned=False
        )
        self._deliverers[namespace] = deliverer
        await deliverer.start()

    async def start_webhooks(self) -> None:
        """At startup: a deliverer for every namespace a client key maps to, so pingbacks written before
        this process started are delivered before its first request. Redis unreachable: logged, and the
        deliverers start with the first submission that asks for a pingback."""
        if not self.settings.webhooks:
            return
        try:
            namespaces = sorted({record.namespace for record in await list_keys(self.client)})
        except CaptchaQueueError as exc:
            log.warning("webhook deliverers not started yet (%s)", type(exc).__name__)
            return
        for namespace in namespaces:
            await self.deliver_webhooks(namespace)

    @property
    def webhook_namespaces(self) -> list[str]:
        """The namespaces whose webhooks this process delivers."""
        return sorted(self._deliverers)

    async def aclose(self) -> None:
        deliverers, self._deliverers = list(self._deliverers.values()), {}
        for deliverer in deliverers:
            await deliverer.stop(WEBHOOK_GRACE_S)
        for queue in self._queues.values():
            await queue.aclose()
        self._queues.clear()
        if self.owns_client:
            await self.client.aclose()


GATEWAY_KEY = web.AppKey("gateway", Gateway)

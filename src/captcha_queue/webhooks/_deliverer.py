"""WebhookDeliverer: sends the outbox's due deliveries, at least once, from any number of processes.

    async with WebhookDeliverer.from_url(redis_url, namespace="captcha", settings=WebhookSettings(secret=s)):
        ...  # deliveries are sent in the background until the block ends

A loop claims due deliveries under a lease (claimDeliveries: Redis server time, so deliverers on
several machines agree), sends each (bounded concurrency, a total timeout per send, no redirects
followed), and settles it: delivered on a 2xx answer, else retried after an exponential backoff with
jitter until ``max_age_s`` has passed, then failed. A deliverer that dies mid-send leaves the lease to
lapse: another one sends the delivery again (the receiver deduplicates on the delivery id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from types import TracebackType
from typing import Self

import aiohttp
import redis.asyncio as aioredis
import yarl
from prometheus_client import CollectorRegistry, Counter

from ..errors import CaptchaQueueError, InvalidTask
from ..protocol.pingback import check_pingback
from ..store.connection import make_client
from ._outbox import Delivery, Outbox
from ._send import GuardedResolver, TargetRefused, build_request
from ._settings import WebhookSettings

__all__ = ["WebhookDeliverer", "backoff_s"]

log = logging.getLogger("captcha_queue.webhooks")

#: How much of an answer's body is read (and kept, shortened, as the last error of a refusal).
_ANSWER_BYTES = 4096
_ERROR_CHARS = 300
#: How long a Redis failure pauses the loop before it tries again.
_REDIS_PAUSE_S = 1.0


def backoff_s(attempts: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """The wait after the ``attempts``-th failed send: ``base_s * 2**(attempts-1)``, at most ``max_s``,
    with "equal jitter" (between half of it and all of it), so deliverers do not retry in step."""
    ceiling = min(max_s, base_s * 2.0 ** min(max(attempts - 1, 0), 60))
    return ceiling / 2 + (rng or random).uniform(0.0, ceiling / 2)


def _target(url: str) -> str:
    """A URL as it may appear in logs: scheme, host and port (the path and query may carry tokens)."""
    parsed = yarl.URL(url, encoded=True)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}"


class WebhookDeliverer:
    """Delivers the webhooks of one namespace until stopped (``start``/``stop`` or ``async with``)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str = "captcha",
        settings: WebhookSettings | None = None,
        deliverer_id: str | None = None,
        registry: CollectorRegistry | None = None,
        owns_client: bool = False,
        warn_unsigned: bool = True,
    ) -> None:
        """``warn_unsigned``: log a warning at start when there is no secret (a process running one
        deliverer per namespace, as the gateway does, says it once itself)."""
        self.settings = settings or WebhookSettings()
        self._warn_unsigned = warn_unsigned
        self.outbox = Outbox(client, namespace)
        self.deliverer_id = deliverer_id or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self._owns_client = owns_client
        self._session: aiohttp.ClientSession | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._rng = random.Random()
        s = self.settings
        self._lease_ms = round(s.lease_s * 1000)
        self._max_age_ms = round(s.max_age_s * 1000)
        self._keep_ms = round(s.keep_s * 1000)
        #: Prometheus counters on this deliverer's own registry (serve it with worker.metrics.serve_metrics).
        self.registry = registry or CollectorRegistry()
        self._sent = Counter(
            "captcha_queue_webhook_sends",
            "Webhook sends by outcome: delivered (2xx), retry (scheduled again), failed (given up), lost "
            "(the lease was lost meanwhile).",
            ["outcome"],
            registry=self.registry,
        )

    @classmethod
    def from_url(
        cls, url: str, *, namespace: str = "captcha", settings: WebhookSettings | None = None
    ) -> WebhookDeliverer:
        """A deliverer with its own Redis client, closed by ``stop``."""
        return cls(
            make_client(url, max_connections=8), namespace=namespace, settings=settings, owns_client=True
        )

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start delivering in the background (returns at once)."""
        if self._loop_task is not None:
            raise RuntimeError("the deliverer is already started")
        if self.settings.secret is None and self._warn_unsigned:
            log.warning("webhook deliveries are sent unsigned: no secret is configured")
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        connector = aiohttp.TCPConnector(
            limit=self.settings.concurrency,
            resolver=GuardedResolver(allow_private=self.settings.allow_private_targets),
            use_dns_cache=False,
        )
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)
        self._stopping.clear()
        self._loop_task = asyncio.create_task(self._run(), name="webhook-deliverer")

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop claiming, let sends in flight finish for up to ``grace_s``, cancel the rest (their
        leases lapse: another deliverer sends them again), close the HTTP session (and the client,
        if this object made it)."""
        self._stopping.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if self._sends:
            _done, pending = await asyncio.wait(set(self._sends), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._owns_client:
            await self.outbox.client.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def run(self) -> None:
        """Deliver until ``request_stop`` (or cancellation), then stop: the standalone process's loop."""
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        """Ask a running deliverer to stop (from a signal handler, say)."""
        self._stopping.set()

    # -- the loop --------------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                more = await self.deliver_due()
            except CaptchaQueueError as exc:
                log.warning("webhook deliverer: %s; trying again in %.0f s", exc, _REDIS_PAUSE_S)
                await self._pause(_REDIS_PAUSE_S)
                continue
            if not more:
                await self._pause(self.settings.poll_s)

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less when stopping or when a send frees a place."""
        self._slot_free.clear()
        waits = [asyncio.ensure_future(self._stopping.wait()), asyncio.ensure_future(self._slot_free.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def deliver_due(self) -> bool:
        """Claim what is due (as many as there are free places) and start sending it; True when more
        may be due right away."""
        free = self.settings.concurrency - len(self._sends)
        if free <= 0:
            return False
        handled, deliveries = await self.outbox.claim(
            free,
            lease_ms=self._lease_ms,
            max_age_ms=self._max_age_ms,
            keep_ms=self._keep_ms,
            deliverer=self.deliverer_id,
        )
        for delivery in deliveries:
            task = asyncio.create_task(self._send(delivery), name=f"webhook-{delivery.task}")
            self._sends.add(task)
            task.add_done_callback(self._sent_one)
        return handled >= free

    def _sent_one(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook send failed unexpectedly", exc_info=task.exception())

    # -- one send --------------------------------------------------------------------------------
    async def _send(self, delivery: Delivery) -> None:
        status: int | None = None
        try:
            check_pingback(delivery.url, allow_private=self.settings.allow_private_targets)
            request = build_request(delivery)
        except (InvalidTask, ValueError) as exc:
            await self._settle(delivery, "failed", error=f"refused: {exc}")
            return
        timestamp = str(int(time.time()))
        headers = request.headers(delivery, timestamp, self.settings.secret)
        assert self._session is not None
        try:
            async with self._session.request(
                request.method,
                yarl.URL(request.url, encoded=True),
                data=request.body,
                headers=headers,
                allow_redirects=False,
            ) as answer:
                status = answer.status
                text = (await answer.content.read(_ANSWER_BYTES)).decode("utf-8", "replace")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, TargetRefused):
                await self._settle(delivery, "failed", error=f"refused: {exc.os_error}")
                return
            await self._retry(delivery, None, f"cannot connect: {exc.os_error or exc}")
            return
        except TimeoutError:
            await self._retry(delivery, None, f"no answer within {self.settings.timeout_s:g} s")
            return
        except (aiohttp.ClientError, OSError, ValueError) as exc:  # ValueError: a URL aiohttp refuses
            await self._retry(delivery, None, f"{type(exc).__name__}: {exc}")
            return
        if 200 <= status < 300:
            await self._settle(delivery, "delivered", status=status)
            return
        detail = " ".join(text.split())[:_ERROR_CHARS]
        await self._retry(delivery, status, f"HTTP {status}" + (f": {detail}" if detail else ""))

    async def _retry(self, delivery: Delivery, status: int | None, error: str) -> None:
        delay = backoff_s(delivery.attempts, self.settings.backoff_s, self.settings.backoff_max_s, self._rng)
        log.info("webhook for task %s to %s: %s", delivery.task, _target(delivery.url), error)
        await self._settle(delivery, "retry", status=status, error=error, delay_ms=round(delay * 1000))

    async def _settle(
        self,
        delivery: Delivery,
        outcome: str,
        *,
        status: int | None = None,
        error: str = "",
        delay_ms: int = 0,
    ) -> None:
        try:
            state = await asyncio.shield(
                self.outbox.settle(
                    delivery,
                    outcome,  # type: ignore[arg-type]
                    delay_ms=delay_ms,
                    max_age_ms=self._max_age_ms,
                    keep_ms=self._keep_ms,
                    status=status,
                    error=error,
                )
            )
        except CaptchaQueueError as exc:
            # The lease lapses and another send follows: at least once.
            log.warning("webhook for task %s: cannot record the send (%s)", delivery.task, exc)
            return
        if state is None:
            self._sent.labels("lost").inc()
            return
        self._sent.labels("retry" if state == "pending" else state).inc()
        if state == "failed":
            log.warning("webhook for task %s to %s failed: %s", delivery.task, _target(delivery.url), error)

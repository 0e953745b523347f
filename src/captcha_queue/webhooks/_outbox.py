"""The outbox in Redis, as the deliverer and the CLI see it: claim, settle, retry, read.

Deliveries are written by the queue's finish scripts (lua/includes/finish.lua) in the transition that
writes the result; the three scripts of lua/webhooks/ move them on. Reads (``get``, ``deliveries``)
are plain HGET/HSCAN: no script.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ..errors import InvalidArgument, ScriptError
from ..store.connection import redis_errors_async, refused_for_replicas
from ..store.keys import Keys
from ..store.scripts import Code, load_scripts, raise_for_code

__all__ = ["DELIVERY_STATES", "Delivery", "DeliveryState", "Outbox"]

log = logging.getLogger("captcha_queue.webhooks")

DeliveryState = Literal["pending", "delivered", "failed"]
DELIVERY_STATES: tuple[DeliveryState, ...] = ("pending", "delivered", "failed")
Outcome = Literal["delivered", "retry", "failed"]


class Delivery(msgspec.Struct, frozen=True, omit_defaults=True):
    """One webhook delivery: a task's final result on its way to the task's pingback URL.

    ``delivery`` is its id (sent as ``X-Captcha-Queue-Delivery``, the receiver's deduplication key);
    times are milliseconds of Redis server time; ``result`` is the Result JSON as text."""

    task: str
    delivery: str
    url: str
    format: str
    status: str
    state: DeliveryState
    attempts: int
    created_ms: int
    since_ms: int
    result: str = ""
    next_ms: int | None = None
    leased_until: int | None = None
    lease: str | None = None
    deliverer: str | None = None
    last_try_ms: int | None = None
    last_status: int | None = None
    last_error: str | None = None
    reason: str | None = None
    done_ms: int | None = None


_decoder = msgspec.json.Decoder(Delivery, strict=False)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def decode_delivery(raw: Any) -> Delivery | None:
    """A stored delivery, or None (logged) when the entry cannot be read."""
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, ValueError) as exc:
        log.warning("unreadable webhook delivery skipped: %s", exc)
        return None


def _check_id(task_id: object) -> str:
    if not isinstance(task_id, str) or not task_id or len(task_id) > 256:
        raise InvalidArgument(
            "a delivery is named by its task id: a string of 1 to 256 characters", field="id"
        )
    return task_id


class Outbox:
    """The deliveries of one namespace."""

    def __init__(self, client: aioredis.Redis, namespace: str = "captcha") -> None:
        self.client = client
        self.keys = Keys(namespace)
        self._scripts = load_scripts()
        self._key_args = (self.keys.webhooks, self.keys.webhooks_due)

    async def _call(self, name: str, args: Sequence[Any]) -> Any:
        async with redis_errors_async(self.client):
            try:
                return await self._scripts[name](self.client, self._key_args, args)
            except ResponseError as exc:
                if refused_for_replicas(exc):
                    raise  # transient: redis_errors_async says so
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ScriptError(f"script {name} failed: {first}") from exc

    @staticmethod
    def _check(reply: Any, task_id: str) -> int:
        code = int(reply[0])
        raise_for_code(code, task_id, _text(reply[1]) if code == Code.WRONG_TYPE else None)
        return code

    async def claim(
        self, limit: int, *, lease_ms: int, max_age_ms: int, keep_ms: int, deliverer: str
    ) -> tuple[int, list[Delivery]]:
        """Lease up to ``limit`` due deliveries; returns (entries handled, the leased deliveries).
        Handled counts the deleted and expired entries too: ``limit`` handled means more may be due."""
        token = uuid.uuid4().hex
        reply = await self._call("claimDeliveries", (limit, lease_ms, max_age_ms, keep_ms, token, deliverer))
        self._check(reply, "(claim)")
        found: list[Delivery] = []
        for i in range(3, len(reply), 2):
            delivery = decode_delivery(reply[i + 1])
            if delivery is not None:
                found.append(delivery)
        return int(reply[2]), found

    async def settle(
        self,
        delivery: Delivery,
        outcome: Outcome,
        *,
        delay_ms: int = 0,
        max_age_ms: int,
        keep_ms: int,
        status: int | None = None,
        error: str = "",
    ) -> str | None:
        """Record one send of a leased delivery; its new state, or None when the lease was lost (another
        deliverer has it now, or an operator retried it) or the record is gone."""
        args = (
            delivery.task,
            delivery.lease or "",
            outcome,
            max(0, delay_ms),
            max_age_ms,
            keep_ms,
            "" if status is None else status,
            error,
        )
        reply = await self._call("settleDelivery", args)
        code = int(reply[0])
        if code in (Code.LEASE_LOST, Code.NOT_FOUND):
            return None
        self._check(reply, delivery.task)
        return _text(reply[1])

    async def retry(self, task_id: str) -> bool:
        """Send a delivery again now (pending, its max age counted from now); False if there is none."""
        reply = await self._call("retryDelivery", (_check_id(task_id),))
        if int(reply[0]) == Code.NOT_FOUND:
            return False
        self._check(reply, task_id)
        return True

    async def get(self, task_id: str) -> Delivery | None:
        """The delivery of a task, or None."""
        async with redis_errors_async(self.client):
            raw = await self.client.hget(self.keys.webhooks, _check_id(task_id))
        return None if raw is None else decode_delivery(raw)

    async def deliveries(self, state: DeliveryState | None = None, limit: int = 100) -> list[Delivery]:
        """Up to ``limit`` deliveries (of one ``state``), newest first."""
        if state is not None and state not in DELIVERY_STATES:
            raise InvalidArgument(f"state must be one of {', '.join(DELIVERY_STATES)}", field="state")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgument("limit must be a positive integer", field="limit")
        found: list[Delivery] = []
        async with redis_errors_async(self.client):
            async for _task, raw in self.client.hscan_iter(self.keys.webhooks, count=500):
                delivery = decode_delivery(raw)
                if delivery is not None and (state is None or delivery.state == state):
                    found.append(delivery)
        found.sort(key=lambda d: d.created_ms, reverse=True)
        return found[:limit]

    async def server_time_ms(self) -> int:
        async with redis_errors_async(self.client):
            seconds, micros = await self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

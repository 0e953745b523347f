"""Per-key limits, kept in Redis so every gateway process counts the same requests and tasks.

* Rate (``rate_per_s``): requests of a key per one-second window, one ``INCR`` (and ``EXPIRE``) per
  request of a key that has a rate; over it, the request is refused and nothing else is done.
* Concurrency (``max_in_flight``): tasks of a key submitted and not yet seen finished. A submit first
  drops the key's tasks that have a result (or are gone), then adds its own id and counts: over the
  quota it takes its id out again and is refused, so two gateways racing may both refuse, never both
  admit over the quota. The count is only read on submits: a poll stays one read.
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis.asyncio as aioredis

from ..store.connection import redis_errors_async
from ..store.keys import GatewayKeys, Keys
from ._keys import ClientKey

__all__ = ["admit_task", "allow_request", "release_task"]

_GATEWAY_KEYS = GatewayKeys()


async def allow_request(client: aioredis.Redis, key: ClientKey) -> bool:
    """Count one request of ``key`` in the current second; False when that is over its rate."""
    if key.rate_per_s is None:
        return True
    window = int(time.time())
    name = _GATEWAY_KEYS.rate(key.id, window)
    async with redis_errors_async(client), client.pipeline(transaction=False) as pipe:
        pipe.incr(name)
        pipe.expire(name, 2)
        count, _ = await pipe.execute()
    return int(count) <= max(1, math.floor(key.rate_per_s))


async def admit_task(client: aioredis.Redis, keys: Keys, key: ClientKey, task_id: str) -> bool:
    """Reserve a place for ``task_id`` in the key's quota; False (nothing kept) when it is full."""
    if key.max_in_flight is None:
        return True
    name = keys.gateway_in_flight(key.id)
    async with redis_errors_async(client):
        members: list[Any] = await client.zrange(name, 0, -1)
        if len(members) >= key.max_in_flight:
            ids = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
            async with client.pipeline(transaction=False) as pipe:
                pipe.hmget(keys.results, ids)
                pipe.hmget(keys.state, ids)
                results, states = await pipe.execute()
            done = [i for i, r, s in zip(ids, results, states, strict=True) if r is not None or s is None]
            if done:
                await client.zrem(name, *done)
        async with client.pipeline(transaction=False) as pipe:
            pipe.zadd(name, {task_id: int(time.time() * 1000)})
            pipe.zcard(name)
            _, count = await pipe.execute()
        if int(count) > key.max_in_flight:
            await client.zrem(name, task_id)
            return False
    return True


async def release_task(client: aioredis.Redis, keys: Keys, key: ClientKey, task_id: str) -> None:
    """Give back a place reserved for a task that was not written after all."""
    if key.max_in_flight is None:
        return
    async with redis_errors_async(client):
        await client.zrem(keys.gateway_in_flight(key.id), task_id)

"""A call is applied whole, or the caller learns exactly what was.

Redis keeps the writes a script made before a command in it failed. A counter field someone
overwrote with text made HINCRBY fail after the task (or the result) was written: ``submit`` raised
but the task was queued, ``complete`` raised but the result was written with no PUBLISH or XADD.
Near ``maxmemory`` a large ``submit_many`` raised ``ScriptError`` after thousands were queued, and
their ids were lost (a retry duplicated them).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from captcha_queue import AsyncCaptchaQueue, ScriptError

RC = {"googlekey": "6Le-site-key", "pageurl": "https://example.com/login"}

BAD_COUNTERS = ["abc", "1.5", " 7", "1e3", "99999999999999999999"]


@pytest.fixture
async def queue(redis_client: aioredis.Redis, namespace: str) -> AsyncIterator[AsyncCaptchaQueue]:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace)
    yield q
    await q.aclose()


async def _snapshot(q: AsyncCaptchaQueue) -> dict[str, object]:
    keys = q.keys
    return {
        "tasks": await q.client.hgetall(keys.tasks),
        "state": await q.client.hgetall(keys.state),
        "results": await q.client.hgetall(keys.results),
        "queued": [await q.client.lrange(keys.queue(p), 0, -1) for p in ("high", "normal", "low")],
        "active": await q.client.zrange(keys.active, 0, -1),
        "events": await q.client.xlen(keys.events),
        "idem": await q.client.hgetall(keys.idempotency),
        "counters": await q.client.hgetall(keys.counters),
    }


# -- a counter that HINCRBY cannot add to ---------------------------------------------------------


@pytest.mark.parametrize("value", BAD_COUNTERS)
async def test_a_broken_counter_refuses_submit_and_nothing_is_queued(
    queue: AsyncCaptchaQueue, value: str
) -> None:
    await queue.client.hset(queue.keys.counters, "submitted", value)
    before = await _snapshot(queue)
    with pytest.raises(ScriptError, match="field submitted is not an integer"):
        await queue.submit("userrecaptcha", RC, idempotency_key="k")
    assert await _snapshot(queue) == before
    await queue.client.hset(queue.keys.counters, "submitted", "41")
    task_id = await queue.submit("userrecaptcha", RC, idempotency_key="k")
    assert (await queue.stats()).submitted == 42
    assert await queue.status(task_id) == "queued"


@pytest.mark.parametrize("value", BAD_COUNTERS)
async def test_a_broken_counter_refuses_complete_and_no_result_is_written(
    queue: AsyncCaptchaQueue, value: str
) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    [claim] = await queue.claim("w", 1, block_s=0)
    await queue.client.hset(queue.keys.counters, "completed", value)
    before = await _snapshot(queue)
    with pytest.raises(ScriptError, match="field completed is not an integer"):
        await queue.complete(claim, "token")
    assert await _snapshot(queue) == before
    assert await queue.get_result(task_id) is None
    # Repaired, the same claim completes once, announced on the stream.
    await queue.client.hdel(queue.keys.counters, "completed")
    result = await queue.complete(claim, "token")
    assert result.status == "success"
    assert await queue.client.xlen(queue.keys.events) == 1
    assert (await queue.stats()).completed == 1


async def test_a_broken_counter_stops_claims_without_writing_and_stats_still_read(
    queue: AsyncCaptchaQueue, caplog: pytest.LogCaptureFixture
) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    await queue.client.hset(queue.keys.counters, "dead", "many")
    before = await _snapshot(queue)
    with caplog.at_level(logging.ERROR, logger="captcha_queue.queue"):
        assert await queue.claim("w", 1, block_s=0) == []
    assert "field dead is not an integer" in caplog.text
    assert await _snapshot(queue) == before
    stats = await queue.stats()
    assert stats.dead == 0  # read as 0 rather than failing the whole snapshot
    assert stats.queued_total == 1
    await queue.client.hset(queue.keys.counters, "dead", "0")
    assert [c.task_id for c in await queue.claim("w", 1, block_s=0)] == [task_id]


async def test_stats_read_a_solver_limit_that_is_not_a_finite_number(queue: AsyncCaptchaQueue) -> None:
    for value in ("nan", "inf", "many"):
        await queue.client.hset(queue.keys.slot_limit("default"), "effective", value)
        assert (await queue.stats()).solver_slots_limit is None

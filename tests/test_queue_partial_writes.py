"""A call is applied whole, or the caller learns exactly what was.

Redis keeps the writes a script made before a command in it failed. A counter field someone
overwrote with text made HINCRBY fail after the task (or the result) was written: ``submit`` raised
but the task was queued, ``complete`` raised but the result was written with no PUBLISH or XADD.
Near ``maxmemory`` a large ``submit_many`` raised ``ScriptError`` after thousands were queued, and
their ids were lost (a retry duplicated them).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest
import redis.asyncio as aioredis

from captcha_queue import AsyncCaptchaQueue, RedisOutOfMemory, ScriptError, TaskSpec
from captcha_queue.queue._core import as_str
from captcha_queue.store.server import EmbeddedRedis

from .helpers import RC

BAD_COUNTERS = ["abc", "1.5", " 7", "1e3", "99999999999999999999"]


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


# -- Redis near maxmemory -----------------------------------------------------------------------------

MAXMEMORY = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def small_redis() -> Iterator[EmbeddedRedis]:
    """A private server with a small maxmemory (noeviction: Redis refuses writes instead)."""
    with EmbeddedRedis(
        extra_args=("--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "noeviction")
    ) as server:
        yield server


@pytest.fixture
async def small_queue(small_redis: EmbeddedRedis) -> AsyncIterator[AsyncCaptchaQueue]:
    q = AsyncCaptchaQueue.from_url(small_redis.url, namespace="oom")
    await q.client.config_set("maxmemory", MAXMEMORY)
    yield q
    await q.client.flushall()
    await q.aclose()


def _batch(n: int, tag: str) -> list[TaskSpec]:
    return [
        TaskSpec("userrecaptcha", {**RC, "pageurl": f"https://example.com/{i}"}, idempotency_key=f"{tag}-{i}")
        for i in range(n)
    ]


@pytest.mark.timeout(60)
async def test_a_batch_that_cannot_fit_below_maxmemory_is_refused_before_any_write(
    small_queue: AsyncCaptchaQueue,
) -> None:
    with pytest.raises(RedisOutOfMemory) as info:
        await small_queue.submit_many(_batch(20_000, "a"))
    assert info.value.accepted == {}
    assert "maxmemory" in str(info.value)
    assert await small_queue.client.dbsize() == 0
    # What fits goes through.
    assert len(await small_queue.submit_many(_batch(2_000, "a"))) == 2_000


@pytest.mark.timeout(60)
async def test_chunks_refused_at_maxmemory_name_exactly_the_ids_written_and_a_retry_is_safe(
    small_queue: AsyncCaptchaQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def passed(prepared: object) -> None:
        return None

    # Stands for another producer filling Redis between this one's headroom check and its writes:
    # each chunk must then be refused whole by Redis itself.
    monkeypatch.setattr(small_queue, "_check_memory", passed)
    # Room for about half the batch, measured on this server (Valkey stores tasks more compactly than
    # Redis 7.0: a fixed maxmemory let all 20,000 in there).
    client = small_queue.client
    await client.config_set("maxmemory", 0)
    base = int((await client.info("memory"))["used_memory"])
    await small_queue.submit_many(_batch(1_000, "probe"))
    per_task = (int((await client.info("memory"))["used_memory"]) - base) / 1_000
    await client.flushall()
    await client.config_set("maxmemory", base + int(per_task * 10_000))
    batch = _batch(20_000, "b")
    with pytest.raises(RedisOutOfMemory) as info:
        await small_queue.submit_many(batch)
    accepted = info.value.accepted
    assert 0 < len(accepted) < 20_000
    assert sorted(accepted) == list(range(len(accepted)))  # a prefix: FIFO is kept
    assert len(accepted) % small_queue.config.submit_chunk == 0  # whole chunks
    assert f"{len(accepted)} of 20000 tasks were accepted" in str(info.value)
    stored = await small_queue.client.hgetall(small_queue.keys.tasks)
    assert {as_str(k) for k in stored} == set(accepted.values())
    for index in (0, len(accepted) - 1):
        task = msgspec.json.decode(stored[accepted[index].encode()])
        assert task["idempotency_key"] == f"b-{index}"
    # With room again, the same batch (same keys) adds only what was missing.
    await small_queue.client.config_set("maxmemory", 0)
    ids = await small_queue.submit_many(batch)
    assert ids[: len(accepted)] == [accepted[i] for i in range(len(accepted))]
    assert await small_queue.client.hlen(small_queue.keys.tasks) == 20_000
    assert (await small_queue.stats()).submitted == 20_000


@pytest.mark.timeout(60)
async def test_accepted_work_still_finishes_above_maxmemory(small_queue: AsyncCaptchaQueue) -> None:
    await small_queue.submit_many(_batch(3_000, "c"))
    used = int((await small_queue.client.info("memory"))["used_memory"])
    await small_queue.client.config_set("maxmemory", used // 2)  # Redis is now far above it
    before = await small_queue.client.hlen(small_queue.keys.tasks)
    with pytest.raises(RedisOutOfMemory) as info:
        await small_queue.submit("userrecaptcha", RC)
    assert info.value.accepted == {}
    assert await small_queue.client.hlen(small_queue.keys.tasks) == before
    # Claims, renewals, retries, finishes and cancels move accepted work on: never refused there
    # (a solved task could never be finished, and finishing is what frees memory as results expire).
    claims = await small_queue.claim("w", 4, block_s=0)
    assert len(claims) == 4
    assert (await small_queue.renew(claims)).renewed == [c.task_id for c in claims]
    claims[3] = await small_queue.record_remote(claims[3], "remote-1")
    assert (await small_queue.complete(claims[0], "token")).status == "success"
    assert await small_queue.fail(claims[1], "ERROR_X", retry_in_s=0.0) is None
    assert await small_queue.cancel(claims[2].task_id)
    assert (await small_queue.expire(claims[3])).status == "expired"
    assert await small_queue.client.xlen(small_queue.keys.events) == 3
    # Reaping is not refused either: it promotes the retry of claims[1] (due now) back to the queue.
    assert await small_queue.reap() == 1


# -- the worker registry --------------------------------------------------------------------------


async def test_a_heartbeat_with_a_broken_info_key_writes_nothing(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    from captcha_queue.errors import RedisCommandError
    from captcha_queue.worker.registry import WorkerRegistry

    queue = AsyncCaptchaQueue(redis_client, namespace=namespace)
    keys = queue.keys
    await redis_client.set(keys.worker_info, "someone else's")
    registry = WorkerRegistry(queue, "w-1")
    with pytest.raises(RedisCommandError, match="WRONGTYPE"):
        await registry.heartbeat(0)
    assert await redis_client.exists(keys.workers) == 0  # used to be registered as live, with no info
    await redis_client.delete(keys.worker_info)
    assert await registry.heartbeat(0) == 1

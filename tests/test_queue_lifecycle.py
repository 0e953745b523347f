"""Cancel, expiry of finished tasks, notifications and listen, stats, the dead-letter queue, the epoch."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import redis.asyncio as aioredis

from captcha_queue import AsyncCaptchaQueue, Result, Solution, TaskCancelled, TaskSpec

from .helpers import RC


async def finish_one(q: AsyncCaptchaQueue, text: str = "token") -> Result:
    [claim] = await q.claim("w", 1, block_s=0)
    return await q.complete(claim, text)


# -- cancel ----------------------------------------------------------------------------------------
async def test_cancel_a_queued_task_ends_it_at_once(queue: AsyncCaptchaQueue) -> None:
    task_id, other = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 2)
    assert await queue.cancel(task_id) is True
    result = await queue.get_result(task_id)
    assert result is not None
    assert result.status == "cancelled"
    assert await queue.client.lrange(queue.keys.queue("normal"), 0, -1) == [other.encode()]
    assert [c.task.id for c in await queue.claim("w", 5, block_s=0)] == [other]


async def test_cancel_a_delayed_retry(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    [claim] = await queue.claim("w", 1)
    await queue.fail(claim, "ERR", retry_in_s=60)
    assert await queue.cancel(task_id)
    stats = await queue.stats()
    assert (stats.delayed, stats.cancelled) == (0, 1)


async def test_cancel_a_claimed_task_tells_its_worker_at_each_step(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    [claim] = await queue.claim("w", 1)
    assert await queue.cancel(task_id)
    result = await queue.get_result(task_id)
    assert result is not None
    assert result.status == "cancelled"
    outcome = await queue.renew([claim])
    assert (outcome.renewed, outcome.lost, outcome.cancelled) == ([], [], [task_id])
    for call in (
        queue.record_remote(claim, "1"),
        queue.complete(claim, "token"),
        queue.fail(claim, "ERR", retry_in_s=1),
        queue.release(claim),
        queue.expire(claim),
    ):
        with pytest.raises(TaskCancelled):
            await call
    assert await queue.get_result(task_id) == result  # still the one final result
    assert (await queue.stats()).in_flight == 0


async def test_cancel_of_a_finished_or_unknown_task_is_false(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    done = await finish_one(queue)
    assert await queue.cancel(task_id) is False
    assert await queue.get_result(task_id) == done
    assert await queue.cancel("0" * 32) is False


async def test_status_follows_a_task_from_queued_to_done(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    assert await queue.status(task_id) == "queued"
    [claim] = await queue.claim("w", 1, block_s=0)
    assert await queue.status(task_id) == "active"
    assert await queue.fail(claim, "TIMEOUT", retry_in_s=60) is None
    assert await queue.status(task_id) == "delayed"
    await queue.cancel(task_id)
    assert await queue.status(task_id) == "done"
    assert await queue.status("0" * 32) is None


# -- everything a finished task leaves expires together ---------------------------------------------
async def test_every_field_of_a_finished_task_expires_with_its_result(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace, result_ttl_s=120)
    task_id = await q.submit("userrecaptcha", RC, idempotency_key="idem-1", metadata={"m": 1})
    await finish_one(q)
    now_s, _ = await redis_client.time()
    score = await redis_client.zscore(q.keys.expiry, task_id)
    assert score == pytest.approx(now_s * 1000 + 120_000, abs=5_000)
    await redis_client.zadd(q.keys.expiry, {task_id: 0})  # its time has come
    await q.reap()
    for key in (q.keys.tasks, q.keys.state, q.keys.results):
        assert not await redis_client.hexists(key, task_id)
    assert await redis_client.hlen(q.keys.idempotency) == 0
    assert await redis_client.zcard(q.keys.expiry) == 0
    assert await q.get_result(task_id) is None


async def test_a_result_is_kept_as_long_as_its_producer_asked_whatever_the_worker_default(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    producer = AsyncCaptchaQueue(redis_client, namespace=namespace, result_ttl_s=86_400)
    worker_side = AsyncCaptchaQueue(redis_client, namespace=namespace)  # default: one hour
    task_id = await producer.submit("userrecaptcha", RC)
    await finish_one(worker_side)
    now_s, _ = await redis_client.time()
    score = await redis_client.zscore(producer.keys.expiry, task_id)
    assert score == pytest.approx(now_s * 1000 + 86_400_000, abs=5_000)


async def test_the_claim_path_reaps_expired_results_in_bounded_batches(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace)
    ids = await q.submit_many([TaskSpec("userrecaptcha", RC)] * 150)
    for task_id in ids:
        await q.cancel(task_id)
    await redis_client.zadd(q.keys.expiry, dict.fromkeys(ids, 0))
    await q.claim("w", 1, block_s=0)
    assert await redis_client.hlen(q.keys.results) == 50  # one batch of 100 per claim
    await q.claim("w", 1, block_s=0)
    assert await redis_client.hlen(q.keys.results) == 0


async def test_producers_reap_expired_results_while_no_worker_runs(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace)
    old = await q.submit("userrecaptcha", RC, idempotency_key="order-7")
    await q.cancel(old)
    await redis_client.zadd(q.keys.expiry, {old: 0})  # its TTL has passed; no worker has claimed since
    fresh = await q.submit("userrecaptcha", RC, idempotency_key="order-7")
    assert fresh != old  # the key is free again once the old result expired
    assert await q.get_result(old) is None
    assert not await redis_client.hexists(q.keys.tasks, old)


async def test_counters_have_a_fixed_set_of_fields(queue: AsyncCaptchaQueue) -> None:
    await queue.submit_many([TaskSpec("userrecaptcha", RC, max_attempts=1)] * 6)
    claims = await queue.claim("w", 6)
    await queue.complete(claims[0], "t")
    await queue.fail(claims[1], "ERR")
    await queue.fail(claims[2], "ERR", retry_in_s=0)  # no attempts left: dead
    await queue.cancel(claims[3].task.id)
    await queue.expire(claims[4])
    await queue.release(claims[5])
    fields = set((await queue.client.hgetall(queue.keys.counters)).keys())
    assert fields <= {b"submitted", b"completed", b"failed", b"dead", b"cancelled", b"expired", b"requeued"}


async def test_dead_letters_expire_after_their_retention(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace, dead_ttl_s=60)
    task_id = await q.submit("userrecaptcha", RC, max_attempts=1)
    [claim] = await q.claim("w", 1)
    await q.fail(claim, "ERR", retry_in_s=0)
    await q.reap()
    assert await q.dead_letter(task_id) is not None
    await redis_client.zadd(q.keys.dead_index, {task_id: 0})
    await q.reap()
    assert await q.dead_letter(task_id) is None
    assert await redis_client.hlen(q.keys.dead) == 0


# -- notifications ---------------------------------------------------------------------------------
async def test_each_final_result_is_published_and_appended_to_the_stream(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    pubsub = queue.client.pubsub()
    await pubsub.subscribe(queue.keys.channel)
    try:
        assert (await pubsub.get_message(timeout=1.0) or {})["type"] == "subscribe"
        result = await finish_one(queue)
        message = await pubsub.get_message(timeout=2.0)
        assert message is not None
        announced = msgspec.json.decode(message["data"])
        assert (announced["id"], announced["status"]) == (task_id, "success")
        # The whole result travels with it, so waiters wake without reading it back.
        assert msgspec.json.decode(msgspec.json.encode(announced["result"]), type=Result) == result
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis-py 8.2
    entries = await queue.client.xrange(queue.keys.events)
    assert entries is not None
    [(_, fields)] = entries
    assert fields is not None
    assert msgspec.json.decode(fields[b"result"], type=Result) == result


async def test_the_events_stream_is_capped(redis_client: aioredis.Redis, namespace: str) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace, events_maxlen=10)
    for task_id in await q.submit_many([TaskSpec("userrecaptcha", RC)] * 300):
        await q.cancel(task_id)
    assert await redis_client.xlen(q.keys.events) < 300


async def wait_until_blocked(client: aioredis.Redis) -> None:
    deadline = asyncio.get_running_loop().time() + 5
    while (await client.info("clients"))["blocked_clients"] < 1:
        assert asyncio.get_running_loop().time() < deadline, "the listener never blocked"
        await asyncio.sleep(0.005)


async def test_listen_from_now_yields_only_later_completions(queue: AsyncCaptchaQueue) -> None:
    await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 2)
    await finish_one(queue)
    events = queue.listen()
    following = asyncio.create_task(anext(events))
    await wait_until_blocked(queue.client)
    later = await finish_one(queue)
    assert await following == later
    await events.aclose()


async def test_listen_resumes_from_an_event_id_without_missing_any(queue: AsyncCaptchaQueue) -> None:
    ids = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 4)
    await finish_one(queue)
    await finish_one(queue)
    events = queue.listen_events(from_id="0-0")
    seen = [await anext(events), await anext(events)]
    await events.aclose()
    assert [r.id for _, r in seen] == ids[:2]
    # Two more finish while nobody listens; resuming from the last id seen misses none of them.
    await finish_one(queue)
    await finish_one(queue)
    resumed = queue.listen(from_id=seen[-1][0])
    later = [await anext(resumed), await anext(resumed)]
    await resumed.aclose()
    assert [r.id for r in later] == ids[2:]


# -- stats -----------------------------------------------------------------------------------------
async def test_stats_in_one_round_trip(queue: AsyncCaptchaQueue) -> None:
    await queue.submit_many(
        [TaskSpec("userrecaptcha", RC, priority=p) for p in ("high", "normal", "normal", "low", "low", "low")]
    )
    [claim] = await queue.claim("w", 1)
    await queue.client.zadd(queue.keys.workers, {"w": 2**50})
    await queue.client.zadd(queue.keys.workers, {"gone": 1})
    await queue.client.zadd(queue.keys.slots("default"), {"w:1": 2**50})
    await queue.client.hset(queue.keys.slot_limit("default"), mapping={"configured": 10, "effective": 8})
    await queue.stats()  # loads readStats on a server no earlier test loaded it into (NOSCRIPT, LOAD, again)
    before = (await queue.client.info("commandstats"))["cmdstat_evalsha"]["calls"]
    stats = await queue.stats()
    assert (await queue.client.info("commandstats"))["cmdstat_evalsha"]["calls"] == before + 1
    assert stats.queued == {"high": 0, "normal": 2, "low": 3}
    assert (stats.in_flight, stats.delayed, stats.workers) == (1, 0, 1)
    assert (stats.solver_slots_used, stats.solver_slots_limit) == (1, 8)
    assert stats.submitted == 6
    assert stats.oldest_queued_age_s is not None
    assert 0 <= stats.oldest_queued_age_s < 60
    assert stats.epoch == await queue.epoch()
    await queue.complete(claim, Solution("t"))
    assert (await queue.stats()).completed == 1


async def test_stats_survive_keys_of_the_wrong_type(queue: AsyncCaptchaQueue) -> None:
    await queue.client.set(queue.keys.counters, "garbage")
    await queue.client.set(queue.keys.queue("high"), "garbage")
    stats = await queue.stats()
    assert stats.queued["high"] == 0
    assert stats.completed == 0


async def test_epoch_is_written_once_and_changes_when_redis_loses_its_data(queue: AsyncCaptchaQueue) -> None:
    first = await queue.epoch()
    assert await queue.epoch() == first
    await queue.submit("userrecaptcha", RC)
    assert (await queue.stats()).epoch == first
    await queue.client.delete(queue.keys.epoch, queue.keys.counters)  # as after a restart with no data
    assert await queue.epoch() != first
    assert (await queue.stats()).submitted == 0


# -- the dead-letter queue --------------------------------------------------------------------------
async def _dead(q: AsyncCaptchaQueue, n: int) -> list[str]:
    ids = await q.submit_many([TaskSpec("userrecaptcha", RC, max_attempts=1, idempotency_key=None)] * n)
    for claim in await q.claim("w", n):
        await q.fail(claim, "ERROR_CAPTCHA_UNSOLVABLE", retry_in_s=0)
    return ids


async def test_dead_letters_list_show_and_purge(queue: AsyncCaptchaQueue) -> None:
    ids = await _dead(queue, 3)
    letters = await queue.dead_letters()
    assert sorted(letter.id for letter in letters) == sorted(ids)
    assert all(letter.reason == "max_attempts" for letter in letters)
    assert len(await queue.dead_letters(limit=2)) == 2
    assert await queue.purge_dead() == 3
    assert await queue.dead_letters() == []
    assert (await queue.stats()).dead_letters == 0


async def test_requeue_gives_a_dead_task_a_new_run_under_its_id(queue: AsyncCaptchaQueue) -> None:
    [task_id] = await _dead(queue, 1)
    assert (await queue.get_result(task_id)) is not None
    assert await queue.requeue(task_id) is True
    assert await queue.dead_letter(task_id) is None
    assert await queue.get_result(task_id) is None
    [claim] = await queue.claim("w", 1)
    assert (claim.task.id, claim.attempt) == (task_id, 1)
    result = await queue.complete(claim, "second time lucky")
    assert result.status == "success"
    assert await queue.requeue(task_id) is False  # no dead letter any more


async def test_requeue_all(queue: AsyncCaptchaQueue) -> None:
    ids = await _dead(queue, 3)
    assert await queue.requeue_all() == 3
    assert sorted(c.task.id for c in await queue.claim("w", 5)) == sorted(ids)


async def test_a_data_set_that_vanished_is_reported_with_the_tasks_lost(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace)
    assert await q.check_data_loss() is None  # nothing seen yet: records the empty data set
    await q.submit_many([TaskSpec("userrecaptcha", RC)] * 5)
    claims = await q.claim("w", 2)
    await q.complete(claims[0], "token")
    assert await q.check_data_loss() is None  # first sight of the epoch: recorded
    assert await q.check_data_loss() is None  # unchanged
    keys = [k async for k in redis_client.scan_iter(match="{" + namespace + "}*")]
    await redis_client.delete(*keys)  # what a restart without persistence leaves
    loss = await q.check_data_loss()
    assert loss is not None
    assert loss.lost == 4  # 5 submitted, 1 finished
    assert loss.epoch_after is None
    assert "4 tasks that were queued or in flight are gone" in loss.describe()
    await q.submit("userrecaptcha", RC)  # a new data set begins
    assert await q.check_data_loss() is None


async def test_a_rollback_that_loses_submissions_acknowledged_since_the_last_check_is_reported(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    """A split brain (a Sentinel failover that leaves the old primary taking writes): this producer's
    3 submissions were acknowledged on the old primary after its last check, the new primary took
    2 others meanwhile. Its counter (7) is above what the last check saw (5) but below the producer's
    acknowledged watermark (8): the loss is reported."""
    q = AsyncCaptchaQueue(redis_client, namespace=namespace)
    other = AsyncCaptchaQueue(redis_client, namespace=namespace)
    await q.submit_many([TaskSpec("userrecaptcha", RC)] * 5)
    assert await q.check_data_loss() is None  # sees 5
    gone = await q.submit_many([TaskSpec("userrecaptcha", RC)] * 3)  # acknowledged: counter 8
    # What the new primary holds: the 3 never reached it ...
    await redis_client.hdel(q.keys.tasks, *gone)
    await redis_client.hdel(q.keys.state, *gone)
    for task_id in gone:
        await redis_client.lrem(q.keys.queue("normal"), 0, task_id)
    await redis_client.hincrby(q.keys.counters, "submitted", -3)
    await other.submit_many([TaskSpec("userrecaptcha", RC)] * 2)  # ... and it took 2 others: 7
    loss = await q.check_data_loss()
    assert loss is not None, "an acknowledged submission rolled back went unreported"
    assert loss.rolled_back
    assert (loss.submitted_before, loss.submitted_after) == (8, 7)
    assert await q.check_data_loss() is None  # reported once

"""Worker side: atomic claims under leases, blocking on Redis, fencing, reaping, retries, release."""

from __future__ import annotations

import asyncio
import re
import time

import msgspec
import pytest
import redis.asyncio as aioredis

from captcha_queue import AsyncCaptchaQueue, LeaseLost, TaskSpec, TransientError

from .helpers import RC


async def expire_lease(q: AsyncCaptchaQueue, task_id: str) -> None:
    """Move a lease deadline into the past (deterministic stand-in for a crashed worker)."""
    await q.client.zadd(q.keys.active, {task_id: 0})


async def state_of(q: AsyncCaptchaQueue, task_id: str) -> dict[str, object]:
    raw = await q.client.hget(q.keys.state, task_id)
    assert raw is not None
    state: dict[str, object] = msgspec.json.decode(raw)
    return state


async def server_ms(client: aioredis.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def wait_until_blocked(client: aioredis.Redis, count: int = 1, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (await client.info("clients"))["blocked_clients"] < count:
        assert time.monotonic() < deadline, "the claimer never blocked on Redis"
        await asyncio.sleep(0.005)


async def test_claim_takes_up_to_count_and_records_the_lease(queue: AsyncCaptchaQueue) -> None:
    ids = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 5)
    before = await server_ms(queue.client)
    claims = await queue.claim("worker-1", 3, lease_s=30)
    after = await server_ms(queue.client)
    assert [c.task.id for c in claims] == ids[:3]
    assert all(c.attempt == 1 and c.worker_id == "worker-1" for c in claims)
    assert len({c.lease_token for c in claims}) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}:\d+", c.lease_token) for c in claims)
    for c in claims:
        # The deadline is Redis server time plus the lease, and it is what the active set holds.
        assert before + 30_000 <= c.lease_deadline_ms <= after + 30_000
        assert await queue.client.zscore(queue.keys.active, c.task.id) == c.lease_deadline_ms
        state = await state_of(queue, c.task.id)
        assert state["worker"] == "worker-1"
        assert state["token"] == c.lease_token
    assert (await queue.stats()).in_flight == 3


async def test_concurrent_claimers_never_share_a_task(queue: AsyncCaptchaQueue) -> None:
    ids = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 40)
    batches = await asyncio.gather(*(queue.claim(f"w{i}", 3, block_s=0) for i in range(20)))
    claimed = [c.task.id for batch in batches for c in batch]
    assert sorted(claimed) == sorted(ids)


async def test_claim_on_an_empty_queue_returns_nothing_after_block_s(queue: AsyncCaptchaQueue) -> None:
    started = time.monotonic()
    assert await queue.claim("w", 1, block_s=0) == []
    assert await queue.claim("w", 1, block_s=0.3) == []
    assert time.monotonic() - started >= 0.3


async def test_claim_blocks_on_redis_without_polling(queue: AsyncCaptchaQueue) -> None:
    before = (await queue.client.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
    assert await queue.claim("w", 1, block_s=1.0) == []
    after = (await queue.client.info("commandstats"))["cmdstat_evalsha"]["calls"]
    assert after - before <= 2  # one claim before blocking, one after the BLPOP timed out


async def test_a_blocked_claim_wakes_as_soon_as_a_task_arrives(queue: AsyncCaptchaQueue) -> None:
    claimer = asyncio.create_task(queue.claim("w", 1, block_s=4.0))
    await wait_until_blocked(queue.client)
    submitted = time.monotonic()
    task_id = await queue.submit("userrecaptcha", RC)
    claims = await claimer
    assert [c.task.id for c in claims] == [task_id]
    assert time.monotonic() - submitted < 0.5


async def test_every_blocked_claimer_wakes_when_a_batch_arrives(queue: AsyncCaptchaQueue) -> None:
    claimers = [asyncio.create_task(queue.claim(f"w{i}", 1, block_s=4.0)) for i in range(3)]
    await wait_until_blocked(queue.client, 3)
    submitted = time.monotonic()
    ids = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 3)
    results = await asyncio.gather(*claimers)
    assert sorted(c.task.id for batch in results for c in batch) == sorted(ids)
    assert time.monotonic() - submitted < 1.0


async def test_expired_lease_goes_back_to_the_head_with_attempts_plus_one(queue: AsyncCaptchaQueue) -> None:
    first, _second = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 2)
    [claim] = await queue.claim("crashed", 1)
    assert claim.task.id == first
    await expire_lease(queue, first)
    [again] = await queue.claim("rescuer", 1)
    assert again.task.id == first  # ahead of `second`, which was queued all along
    assert again.attempt == 2
    assert again.lease_token != claim.lease_token
    history = (await state_of(queue, first))["history"]
    assert isinstance(history, list)
    assert history[0]["outcome"] == "stalled"
    assert history[0]["worker_id"] == "crashed"


async def test_a_poison_task_is_dead_lettered_stalled_after_max_attempts(queue: AsyncCaptchaQueue) -> None:
    poison = await queue.submit("userrecaptcha", RC, max_attempts=3)
    other = await queue.submit("userrecaptcha", RC, priority="low")
    for attempt in (1, 2, 3):
        [claim] = await queue.claim(f"victim-{attempt}", 1)
        assert (claim.task.id, claim.attempt) == (poison, attempt)
        await expire_lease(queue, poison)
    [claim] = await queue.claim("w", 1)
    assert claim.task.id == other  # the poison task did not come back
    result = await queue.get_result(poison)
    assert result is not None
    assert (result.status, result.error_code, result.attempts) == ("error", "STALLED", 3)
    letter = await queue.dead_letter(poison)
    assert letter is not None
    assert letter.reason == "stalled"
    assert [a.worker_id for a in letter.history] == ["victim-1", "victim-2", "victim-3"]
    assert letter.task is not None
    assert letter.task.id == poison
    stats = await queue.stats()
    assert (stats.dead, stats.dead_letters, stats.failed) == (1, 1, 0)


async def test_reap_requeues_expired_leases_without_claiming(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    await queue.claim("crashed", 1)
    await expire_lease(queue, task_id)
    assert await queue.reap() >= 1
    stats = await queue.stats()
    assert (stats.queued["normal"], stats.in_flight) == (1, 0)


async def test_renew_extends_leases_in_one_call_and_reports_lost_ones(queue: AsyncCaptchaQueue) -> None:
    await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 3)
    claims = await queue.claim("w", 3, lease_s=5)
    await expire_lease(queue, claims[2].task.id)
    await queue.claim("thief", 1, block_s=0)  # reaps and takes the expired one
    outcome = await queue.renew(claims, lease_s=60)
    assert outcome.renewed == [claims[0].task.id, claims[1].task.id]
    assert outcome.lost == [claims[2].task.id]
    assert outcome.cancelled == []
    now = await server_ms(queue.client)
    score = await queue.client.zscore(queue.keys.active, claims[0].task.id)
    assert score is not None
    assert score > now + 55_000


async def test_renew_keeps_a_lease_that_expired_but_was_not_reaped(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    [claim] = await queue.claim("slow", 1)
    await expire_lease(queue, task_id)
    outcome = await queue.renew([claim])
    assert outcome.renewed == [task_id]  # nobody else took it: the holder keeps it


async def test_a_worker_that_lost_its_lease_writes_nothing(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    [stale] = await queue.claim("zombie", 1)
    await expire_lease(queue, task_id)
    [fresh] = await queue.claim("rescuer", 1)
    state_before = await queue.client.hget(queue.keys.state, task_id)
    for call in (
        queue.record_remote(stale, "999"),
        queue.complete(stale, "late token"),
        queue.fail(stale, "ERROR_X"),
        queue.fail(stale, "ERROR_X", retry_in_s=1),
        queue.release(stale),
        queue.expire(stale),
    ):
        with pytest.raises(LeaseLost):
            await call
    assert await queue.client.hget(queue.keys.state, task_id) == state_before
    assert await queue.get_result(task_id) is None
    result = await queue.complete(fresh, "good token")
    assert result.solution is not None
    assert result.solution.text == "good token"


async def test_exactly_one_final_result_per_task(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    [claim] = await queue.claim("w", 1)
    first = await queue.complete(claim, "token-1")
    # A retry of the same finish (say, after a lost reply) answers the stored result, writes nothing.
    assert await queue.complete(claim, "token-2") == first
    assert await queue.fail(claim, "ERR") == first
    stored = await queue.get_result(task_id)
    assert stored == first
    assert await queue.client.xlen(queue.keys.events) == 1
    assert (await queue.stats()).completed == 1


async def test_fail_with_retry_schedules_a_delayed_fresh_attempt(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    [claim] = await queue.claim("w", 1)
    claim = await queue.record_remote(claim, "12345")
    assert await queue.fail(claim, TransientError("HTTP_502", "bad gateway"), retry_in_s=30) is None
    stats = await queue.stats()
    assert (stats.delayed, stats.in_flight, stats.queued_total) == (1, 0, 0)
    assert await queue.claim("w", 1, block_s=0) == []  # not due yet
    await queue.client.zadd(queue.keys.delayed, {task_id: 0})  # now it is
    [retry] = await queue.claim("w", 1, block_s=0)
    assert (retry.task.id, retry.attempt, retry.remote_id) == (task_id, 2, None)
    history = (await state_of(queue, task_id))["history"]
    assert isinstance(history, list)
    assert history[0]["error_code"] == "HTTP_502"
    assert history[0]["outcome"] == "retry"


async def test_a_short_retry_wakes_a_blocked_claimer(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    [claim] = await queue.claim("w", 1)
    claimer = asyncio.create_task(queue.claim("other", 1, block_s=4.0))
    await wait_until_blocked(queue.client)
    started = time.monotonic()
    await queue.fail(claim, "ERR", retry_in_s=0.2)
    [retry] = await claimer
    assert retry.task.id == task_id
    assert time.monotonic() - started < 1.5


async def test_fatal_fail_finishes_with_the_error(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    [claim] = await queue.claim("w", 1)
    result = await queue.fail(claim, "ERROR_PAGEURL", "the page url is wrong")
    assert result is not None
    assert (result.status, result.error_code, result.error_message) == (
        "error",
        "ERROR_PAGEURL",
        "the page url is wrong",
    )
    assert result.attempts == 1
    assert await queue.dead_letter(task_id) is None
    assert (await queue.stats()).failed == 1


async def test_retries_exhausted_go_to_the_dead_letter_queue_with_history(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC, max_attempts=2)
    [claim] = await queue.claim("w1", 1)
    assert await queue.fail(claim, "ERROR_CAPTCHA_UNSOLVABLE", retry_in_s=0) is None
    [claim] = await queue.claim("w2", 1)
    result = await queue.fail(claim, "ERROR_CAPTCHA_UNSOLVABLE", "gave up", retry_in_s=0)
    assert result is not None
    assert (result.status, result.error_code, result.attempts) == ("error", "ERROR_CAPTCHA_UNSOLVABLE", 2)
    letter = await queue.dead_letter(task_id)
    assert letter is not None
    assert letter.reason == "max_attempts"
    assert [(a.attempt, a.worker_id, a.outcome) for a in letter.history] == [
        (1, "w1", "retry"),
        (2, "w2", "retry"),
    ]


async def test_release_returns_to_the_head_without_consuming_an_attempt(queue: AsyncCaptchaQueue) -> None:
    first, _ = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 2)
    [claim] = await queue.claim("w", 1)
    claim = await queue.record_remote(claim, "777")
    await queue.release(claim)
    [again] = await queue.claim("w", 1)
    assert (again.task.id, again.attempt, again.remote_id) == (first, 1, "777")
    with pytest.raises(LeaseLost):
        await queue.complete(claim, "stale")


async def test_record_remote_is_returned_when_the_task_is_claimed_again(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    [claim] = await queue.claim("w", 1)
    before = await server_ms(queue.client)
    updated = await queue.record_remote(claim, "73219876")
    assert updated.remote_id == "73219876"
    assert updated.remote_submitted_at is not None
    assert abs(updated.remote_submitted_at * 1000 - before) < 2000
    await expire_lease(queue, task_id)
    [resumed] = await queue.claim("w2", 1)
    assert (resumed.remote_id, resumed.remote_submitted_at) == ("73219876", updated.remote_submitted_at)


async def test_a_task_claimed_after_its_deadline_ends_expired(queue: AsyncCaptchaQueue) -> None:
    doomed = await queue.submit("userrecaptcha", RC, expires_in_s=0.001)
    fine = await queue.submit("userrecaptcha", RC, expires_in_s=600)
    deadline = time.monotonic() + 5
    while await server_ms(queue.client) < (await state_of(queue, doomed))["expires_ms"]:  # type: ignore[operator]
        assert time.monotonic() < deadline
        await asyncio.sleep(0.002)
    claims = await queue.claim("w", 2)
    assert [c.task.id for c in claims] == [fine]  # the expired one never reached a worker
    result = await queue.get_result(doomed)
    assert result is not None
    assert result.status == "expired"
    assert (await queue.stats()).expired == 1


async def test_a_worker_can_expire_a_claimed_task(queue: AsyncCaptchaQueue) -> None:
    await queue.submit("userrecaptcha", RC, expires_in_s=600)
    [claim] = await queue.claim("w", 1)
    assert claim.task.expires_at is not None
    result = await queue.expire(claim)
    assert result.status == "expired"


async def test_claim_returns_nothing_while_the_fleet_is_paused(queue: AsyncCaptchaQueue) -> None:
    await queue.submit("userrecaptcha", RC)
    await queue.client.hset(queue.keys.paused, mapping={"reason": "ERROR_ZERO_BALANCE", "since_ms": 1})
    assert await queue.claim("w", 1, block_s=0) == []
    assert (await queue.stats()).paused == "ERROR_ZERO_BALANCE"
    past = await server_ms(queue.client) - 1
    await queue.client.hset(queue.keys.paused, "until_ms", past)  # the pause has run out
    assert len(await queue.claim("w", 1, block_s=0)) == 1


async def test_a_timed_pause_bounds_the_blocking_wait(queue: AsyncCaptchaQueue) -> None:
    await queue.submit("userrecaptcha", RC)
    until = await server_ms(queue.client) + 300
    await queue.client.hset(queue.keys.paused, mapping={"reason": "IP_BANNED", "until_ms": until})
    started = time.monotonic()
    claims = await queue.claim("w", 1, block_s=4.0)
    assert len(claims) == 1
    assert time.monotonic() - started < 2.0


@pytest.mark.timeout(30)
async def test_a_claim_larger_than_one_read_chunk_keeps_priority_and_fifo_order(
    queue: AsyncCaptchaQueue,
) -> None:
    # claimTasks reads each list in chunks of 500 ids and trims it once: order and the rest survive.
    low = await queue.submit_many([TaskSpec("userrecaptcha", RC, priority="low")] * 5)
    normal = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 700)
    high = await queue.submit_many([TaskSpec("userrecaptcha", RC, priority="high")] * 3)
    claims = await queue.claim("w", 705, block_s=0)
    assert [c.task.id for c in claims] == high + normal + low[:2]
    assert len({c.lease_token for c in claims}) == 705
    assert await queue.client.zcard(queue.keys.active) == 705
    lengths = [await queue.client.llen(queue.keys.queue(p)) for p in ("high", "normal", "low")]
    assert lengths == [0, 0, 3]
    assert [c.task.id for c in await queue.claim("w", 10, block_s=0)] == low[2:]
    assert await queue.claim("w", 1, block_s=0) == []


@pytest.mark.timeout(30)
async def test_an_id_queued_twice_is_handed_out_once_and_the_copy_is_dropped(
    queue: AsyncCaptchaQueue, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 2)
    await queue.client.rpush(queue.keys.queue("normal"), first)  # someone pushed it again
    claims = await queue.claim("w", 5, block_s=0)
    assert [c.task.id for c in claims] == [first, second]
    assert f"queued id {first} is active: stale entry skipped" in caplog.text
    assert await queue.client.llen(queue.keys.queue("normal")) == 0
    assert (await state_of(queue, first))["token"] == claims[0].lease_token

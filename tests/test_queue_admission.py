"""What a submission may be refused for in Redis: an idempotency key reused for another task, and a
full queue (``max_queued``). Both are checked by the submit script before it writes anything."""

from __future__ import annotations

import dataclasses
import json

import pytest
import redis.asyncio as aioredis

import captcha_queue
import captcha_queue.queue
from captcha_queue import (
    AsyncCaptchaQueue,
    CaptchaQueue,
    CaptchaQueueError,
    IdempotencyConflict,
    QueueFull,
    SubmitRefused,
    TaskSpec,
)
from captcha_queue.queue._core import as_str

from .helpers import RC


async def _snapshot(q: AsyncCaptchaQueue) -> dict[str, object]:
    keys = q.keys
    return {
        "tasks": await q.client.hgetall(keys.tasks),
        "state": await q.client.hgetall(keys.state),
        "queued": [await q.client.lrange(keys.queue(p), 0, -1) for p in ("high", "normal", "low")],
        "idem": await q.client.hgetall(keys.idempotency),
        "counters": await q.client.hgetall(keys.counters),
        "wake": await q.client.lrange(keys.wake, 0, -1),
    }


def test_the_new_errors_are_exported_under_the_root() -> None:
    for error in (SubmitRefused, QueueFull, IdempotencyConflict, captcha_queue.RedisOutOfMemory):
        assert issubclass(error, CaptchaQueueError)
        assert error.__name__ in captcha_queue.__all__


# -- idempotency conflicts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changed",
    [
        {"params": {**RC, "pageurl": "https://example.com/other"}},
        {"params": {**RC, "invisible": 1}},
        {"method": "turnstile", "params": {"sitekey": "s", "pageurl": RC["pageurl"]}},
        {"priority": "high"},
    ],
    ids=["other params", "one more param", "other method", "other priority"],
)
async def test_a_key_reused_for_another_task_is_a_conflict_naming_the_existing_task(
    queue: AsyncCaptchaQueue, changed: dict[str, object]
) -> None:
    first = await queue.submit("userrecaptcha", RC, idempotency_key="order-1")
    before = await _snapshot(queue)
    call: dict[str, object] = {"method": "userrecaptcha", "params": RC, **changed}
    with pytest.raises(IdempotencyConflict) as info:
        await queue.submit(call.pop("method"), call.pop("params"), idempotency_key="order-1", **call)  # type: ignore[arg-type]
    assert info.value.task_id == first
    assert info.value.idempotency_key == "order-1"
    assert first in str(info.value)
    assert await _snapshot(queue) == before
    # The same batch entry inside submit_many: refused too, nothing of the batch written.
    with pytest.raises(IdempotencyConflict) as batch_info:
        await queue.submit_many(
            [TaskSpec("userrecaptcha", RC), {**changed, "method": call.get("method", "userrecaptcha"),
             "params": changed.get("params", RC), "idempotency_key": "order-1"}]
        )  # fmt: skip
    assert batch_info.value.task_id == first
    assert "task 1 of the batch" in str(batch_info.value)
    assert await _snapshot(queue) == before


async def test_the_same_task_again_answers_the_same_id(queue: AsyncCaptchaQueue) -> None:
    first = await queue.submit("userrecaptcha", {**RC, "user_agent": "UA"}, idempotency_key="k")
    # Aliases applied, params in another order, other options that are not part of the task's
    # identity (metadata, attempts, deadline): still the same task.
    reordered = {"userAgent": "UA", "pageurl": RC["pageurl"], "googlekey": RC["googlekey"]}
    again = await queue.submit(
        "userrecaptcha", reordered, idempotency_key="k", metadata={"x": 1}, max_attempts=5, expires_in_s=60
    )
    assert again == first
    assert (await queue.stats()).submitted == 1
    # Still a conflict once the task has finished, while its result lives.
    [claim] = await queue.claim("w", 1, block_s=0)
    await queue.complete(claim, "token")
    with pytest.raises(IdempotencyConflict):
        await queue.submit("userrecaptcha", RC, idempotency_key="k")
    assert await queue.submit("userrecaptcha", reordered, idempotency_key="k") == first


async def test_a_key_whose_result_expired_is_free_for_another_task(queue: AsyncCaptchaQueue) -> None:
    first = await queue.submit("userrecaptcha", RC, idempotency_key="k")
    assert await queue.cancel(first)
    await queue.client.zadd(queue.keys.expiry, {first: 0})  # its result TTL has passed, not yet reaped
    other = await queue.submit("turnstile", {"sitekey": "s", "pageurl": "https://x"}, idempotency_key="k")
    assert other != first
    assert await queue.get_result(first) is None  # reaped on the way


async def test_one_key_twice_in_a_batch_with_different_tasks_is_a_conflict(queue: AsyncCaptchaQueue) -> None:
    before = await _snapshot(queue)
    with pytest.raises(IdempotencyConflict) as info:
        await queue.submit_many(
            [
                {"method": "userrecaptcha", "params": RC, "idempotency_key": "k"},
                {"method": "userrecaptcha", "params": RC, "idempotency_key": "other"},
                {"method": "userrecaptcha", "params": RC, "idempotency_key": "k", "priority": "low"},
            ]
        )
    assert info.value.accepted == {}
    assert "task 2 of the batch" in str(info.value)
    assert await _snapshot(queue) == before
    ids = await queue.submit_many([{"method": "userrecaptcha", "params": RC, "idempotency_key": "k"}] * 2)
    assert ids[0] == ids[1]


async def test_a_conflict_in_a_later_chunk_names_the_chunks_written_before_it(
    queue: AsyncCaptchaQueue,
) -> None:
    existing = await queue.submit("userrecaptcha", RC, idempotency_key="taken")
    queue.config = dataclasses.replace(queue.config, submit_chunk=2)
    batch: list[TaskSpec | dict[str, object]] = [
        TaskSpec("userrecaptcha", RC, idempotency_key=f"k{i}") for i in range(6)
    ]
    batch[3] = {"method": "userrecaptcha", "params": RC, "priority": "low", "idempotency_key": "taken"}
    with pytest.raises(IdempotencyConflict) as info:
        await queue.submit_many(batch)
    assert info.value.task_id == existing
    assert sorted(info.value.accepted) == [0, 1]  # the first chunk; the rest was not written
    assert "2 of 6 tasks were accepted" in str(info.value)
    stored = {as_str(k) for k in await queue.client.hkeys(queue.keys.tasks)}
    assert stored == {existing, *info.value.accepted.values()}
    # Retried with the conflict fixed, the same keys add only the missing tasks.
    batch[3] = TaskSpec("userrecaptcha", RC, idempotency_key="k3")
    ids = await queue.submit_many(batch)
    assert ids[:2] == [info.value.accepted[0], info.value.accepted[1]]
    assert (await queue.stats()).submitted == 7


async def test_a_mapping_stored_before_digests_existed_answers_its_id(queue: AsyncCaptchaQueue) -> None:
    first = await queue.submit("userrecaptcha", RC, idempotency_key="old")
    state = json.loads(as_str(await queue.client.hget(queue.keys.state, first)))
    del state["idem_digest"]
    await queue.client.hset(queue.keys.state, first, json.dumps(state))
    assert await queue.submit("userrecaptcha", {**RC, "pageurl": "https://x"}, idempotency_key="old") == first


def test_the_sync_queue_raises_the_same_conflict(redis_url: str, namespace: str) -> None:
    with CaptchaQueue.from_url(redis_url, namespace=namespace) as q:
        first = q.submit("userrecaptcha", RC, idempotency_key="k")
        with pytest.raises(IdempotencyConflict) as info:
            q.submit("userrecaptcha", RC, idempotency_key="k", priority="low")
        assert info.value.task_id == first


# -- backpressure: max_queued ---------------------------------------------------------------------


async def test_a_full_queue_refuses_submissions_without_writing(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace, max_queued=3)
    ids = await q.submit_many([TaskSpec("userrecaptcha", RC)] * 2)
    keyed = await q.submit("userrecaptcha", RC, idempotency_key="k")
    before = await _snapshot(q)
    with pytest.raises(QueueFull) as info:
        await q.submit("userrecaptcha", RC)
    assert (info.value.queued, info.value.limit) == (3, 3)
    assert "max_queued is 3" in str(info.value)
    with pytest.raises(QueueFull):
        await q.submit_many([TaskSpec("userrecaptcha", RC)] * 2)
    assert await _snapshot(q) == before
    # A duplicate adds nothing, so it is answered even while the queue is full.
    assert await q.submit("userrecaptcha", RC, idempotency_key="k") == keyed
    # Room again once a worker takes one: exactly one more fits.
    [claim] = await q.claim("w", 1, block_s=0)
    assert claim.task_id == ids[0]
    with pytest.raises(QueueFull):
        await q.submit_many([TaskSpec("userrecaptcha", RC)] * 2)
    assert await q.submit("userrecaptcha", RC)
    await q.aclose()


async def test_a_batch_over_the_limit_is_refused_at_its_first_chunk_that_does_not_fit(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace, max_queued=5)
    q.config = dataclasses.replace(q.config, submit_chunk=2)
    with pytest.raises(QueueFull) as info:
        await q.submit_many([TaskSpec("userrecaptcha", RC)] * 7)
    assert sorted(info.value.accepted) == [0, 1, 2, 3]
    assert (await q.stats()).queued_total == 4
    await q.aclose()


@pytest.mark.parametrize("limit", [0, -1, True, 2.5, "10"])
def test_max_queued_must_be_a_positive_integer(limit: object) -> None:
    with pytest.raises(ValueError, match="max_queued"):
        captcha_queue.queue.QueueConfig(max_queued=limit)  # type: ignore[arg-type]

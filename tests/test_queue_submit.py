"""Producer side: validation before any write, ids, strict priorities, FIFO, idempotency, payload limit."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from captcha_queue import AsyncCaptchaQueue, InvalidTask, TaskSpec
from captcha_queue.store.keys import Keys

from .helpers import RC


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"n": value}
    return value


async def namespace_keys(client: aioredis.Redis, namespace: str) -> list[bytes]:
    return [key async for key in client.scan_iter(match="{" + namespace + "}*")]


async def claim_all(q: AsyncCaptchaQueue, n: int) -> list[str]:
    claims = await q.claim("w", n, block_s=0)
    return [c.task.id for c in claims]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"method": "no_such_method"}, "method"),
        ({"params": {"pageurl": "https://example.com"}}, "googlekey"),
        ({"params": {**RC, "cookies": ["not", "a", "string"]}}, "cookies"),
        ({"params": {**RC, "invisible": True}}, "invisible"),
        ({"priority": "urgent"}, "priority"),
        ({"priority": 1}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"expires_in_s": -1}, "expires_in_s"),
        ({"expires_in_s": float("nan")}, "expires_in_s"),
        ({"expires_in_s": "10"}, "expires_in_s"),
        ({"metadata": ["not", "a", "dict"]}, "metadata"),
        ({"metadata": {1: "int key"}}, "metadata"),
        ({"metadata": {"x": object()}}, "metadata"),
        ({"metadata": {"bad": "\ud800"}}, "metadata"),
        ({"metadata": {"set": {1, 2}}}, "metadata"),
        ({"metadata": {"nested": {3: "int key"}}}, "metadata"),
        ({"metadata": {"nan": float("nan")}}, "metadata"),
        ({"metadata": {"deep": _nested(5000)}}, "metadata"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": 42}, "idempotency_key"),
        ({"idempotency_key": "k" * 300}, "idempotency_key"),
    ],
)
async def test_invalid_submission_names_the_field_and_writes_nothing(
    queue: AsyncCaptchaQueue, redis_client: aioredis.Redis, namespace: str, kwargs: dict[str, Any], field: str
) -> None:
    call: dict[str, Any] = {"method": "userrecaptcha", "params": RC, **kwargs}
    method, params = call.pop("method"), call.pop("params")
    with pytest.raises(InvalidTask) as info:
        await queue.submit(method, params, **call)
    assert info.value.field == field
    assert await namespace_keys(redis_client, namespace) == []


async def test_payload_over_the_limit_is_refused_including_image_bodies(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace, max_payload_bytes=4096)
    with pytest.raises(InvalidTask) as info:
        await q.submit("base64", {"body": "A" * 5000})
    assert info.value.field == "params"
    assert await namespace_keys(redis_client, namespace) == []
    assert await q.submit("base64", {"body": "A" * 3000})


async def test_default_payload_limit_is_512_kib(queue: AsyncCaptchaQueue) -> None:
    with pytest.raises(InvalidTask):
        await queue.submit("base64", {"body": "A" * (512 * 1024)})
    assert await queue.submit("base64", {"body": "A" * (500 * 1024)})


async def test_one_invalid_task_in_a_batch_writes_none(
    queue: AsyncCaptchaQueue, redis_client: aioredis.Redis, namespace: str
) -> None:
    specs: list[Any] = [TaskSpec("userrecaptcha", RC)] * 3 + [
        {"method": "userrecaptcha", "params": RC, "x": 1}
    ]
    with pytest.raises(InvalidTask) as info:
        await queue.submit_many(specs)
    assert info.value.field == "x"
    assert "task 3" in str(info.value)
    assert await namespace_keys(redis_client, namespace) == []


async def test_ids_are_unique_random_hex(queue: AsyncCaptchaQueue) -> None:
    ids = await queue.submit_many([TaskSpec("turnstile", {"sitekey": "s", "pageurl": "https://x"})] * 500)
    assert len(set(ids)) == 500
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


async def test_strict_priorities_fifo_within_each(queue: AsyncCaptchaQueue) -> None:
    order = ["low", "normal", "high", "low", "high", "normal", "high"]
    ids = [await queue.submit("userrecaptcha", RC, priority=p) for p in order]
    expected = [i for p in ("high", "normal", "low") for i, q in zip(ids, order, strict=True) if q == p]
    assert await claim_all(queue, len(ids)) == expected


async def test_fifo_holds_across_submit_many_batches(queue: AsyncCaptchaQueue) -> None:
    first = await queue.submit_many(
        [TaskSpec("userrecaptcha", RC, priority="low"), TaskSpec("userrecaptcha", RC, priority="high")] * 3
    )
    second = await queue.submit_many(
        [{"method": "userrecaptcha", "params": RC, "priority": p} for p in ("high", "low", "high")]
    )
    all_ids = first + second
    priorities = ["low", "high"] * 3 + ["high", "low", "high"]
    expected = [i for p in ("high", "low") for i, q in zip(all_ids, priorities, strict=True) if q == p]
    assert await claim_all(queue, len(all_ids)) == expected


async def test_submit_many_larger_than_one_script_call_keeps_order(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace)
    q.config = dataclasses.replace(q.config, submit_chunk=7)  # several script calls in one pipeline
    ids = await q.submit_many([TaskSpec("userrecaptcha", RC)] * 30)
    assert await claim_all(q, 30) == ids


async def test_idempotency_key_returns_the_same_id_while_the_task_lives(queue: AsyncCaptchaQueue) -> None:
    first = await queue.submit("userrecaptcha", RC, idempotency_key="order-17")
    again = await queue.submit("userrecaptcha", RC, idempotency_key="order-17")
    batch = await queue.submit_many(
        [
            {"method": "userrecaptcha", "params": RC, "idempotency_key": "order-17"},
            {"method": "userrecaptcha", "params": RC, "idempotency_key": "order-18"},
            {"method": "userrecaptcha", "params": RC, "idempotency_key": "order-18"},
        ]
    )
    assert again == first
    assert batch[0] == first
    assert batch[1] == batch[2] != first
    assert (await queue.stats()).submitted == 2
    # Still the same id once the task has finished, while its result lives.
    [claim] = await queue.claim("w", 1, block_s=0)
    await queue.complete(claim, "token")
    assert await queue.submit("userrecaptcha", RC, idempotency_key="order-17") == first


async def test_idempotency_key_is_free_again_once_the_result_expired(
    queue: AsyncCaptchaQueue, redis_client: aioredis.Redis
) -> None:
    first = await queue.submit("userrecaptcha", RC, idempotency_key="k")
    assert await queue.cancel(first)
    await redis_client.zadd(queue.keys.expiry, {first: 0})
    await queue.reap()
    assert await queue.submit("userrecaptcha", RC, idempotency_key="k") != first


async def test_stored_json_is_readable_and_carries_server_times(
    queue: AsyncCaptchaQueue, redis_client: aioredis.Redis
) -> None:
    task_id = await queue.submit("userrecaptcha", RC, priority="high", metadata={"order": 7}, expires_in_s=60)
    raw = await redis_client.hget(queue.keys.tasks, task_id)
    assert raw is not None
    stored = msgspec.json.decode(raw)
    seconds, _ = await redis_client.time()
    assert stored["id"] == task_id
    assert stored["params"] == RC
    assert stored["metadata"] == {"order": 7}
    assert abs(stored["submitted_at"] - seconds) < 5
    assert stored["expires_at"] == pytest.approx(stored["submitted_at"] + 60, abs=0.01)


def test_every_key_shares_the_namespace_hash_tag() -> None:
    keys = Keys("captcha")
    names = [*keys.script_keys, keys.slots("default"), keys.slot_limit("default"), keys.channel]
    assert all(name.startswith("{captcha}:") for name in names)
    assert len(set(keys.script_keys)) == len(keys.script_keys)


async def test_aliases_are_applied_before_storing(
    queue: AsyncCaptchaQueue, redis_client: aioredis.Redis
) -> None:
    task_id = await queue.submit("userrecaptcha", {**RC, "user_agent": "Mozilla/5.0"})
    raw = await redis_client.hget(queue.keys.tasks, task_id)
    assert raw is not None
    stored = msgspec.json.decode(raw)
    assert stored["params"]["userAgent"] == "Mozilla/5.0"

"""What others leave in Redis, scripts flushed from the server, and Redis out of reach."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import pytest
from bench.chaos.proxy import FaultProxy

from captcha_queue import AsyncCaptchaQueue, Claim, RedisUnavailable, ScriptError, TaskSpec
from captcha_queue.store.connection import make_client

from .helpers import RC, free_port


async def test_a_queued_id_without_a_task_is_dead_lettered(
    queue: AsyncCaptchaQueue, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.client.rpush(queue.keys.queue("high"), "ghost")
    good = await queue.submit("userrecaptcha", RC)
    with caplog.at_level(logging.WARNING, logger="captcha_queue.queue"):
        claims = await queue.claim("w", 2)
    assert [c.task.id for c in claims] == [good]
    letter = await queue.dead_letter("ghost")
    assert letter is not None
    assert letter.reason == "no task"
    assert "ghost" in caplog.text
    result = await queue.get_result("ghost")
    assert result is not None
    assert result.error_code == "MALFORMED"


@pytest.mark.parametrize(
    "state",
    [
        b'{"status":"queued","attem',
        b"not json",
        b'{"status":"queued"}',
        b"[1,2,3]",
        b'{"status":"queued",'
        b'"attempts":0,"max_attempts":3,"priority":"urgent","method":"x","submitted_ms":1}',
    ],
)
async def test_a_malformed_state_is_dead_lettered_with_the_raw_entry(
    queue: AsyncCaptchaQueue, state: bytes
) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    await queue.client.hset(queue.keys.state, task_id, state)
    assert await queue.claim("w", 1, block_s=0) == []
    letter = await queue.dead_letter(task_id)
    assert letter is not None
    assert letter.reason == "malformed state"
    assert letter.raw == state.decode()
    assert letter.task is not None
    assert letter.task.id == task_id


@pytest.mark.parametrize(
    "task_json",
    [
        b'{"id": "trunc',
        b'{"id":"x","method":"m","params":{}}',  # a readable task, but under another id
        b'{"method":"userrecaptcha"}',
        b'{"id":"x","method":"\xc3\x28"}',  # not UTF-8
    ],
)
async def test_an_unreadable_task_body_is_dead_lettered_and_never_reaches_a_worker(
    queue: AsyncCaptchaQueue, task_json: bytes
) -> None:
    bad, good = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 2)
    await queue.client.hset(queue.keys.tasks, bad, task_json)
    claims = await queue.claim("w", 2)
    assert [c.task.id for c in claims] == [good]
    letter = await queue.dead_letter(bad)
    assert letter is not None
    assert letter.reason.startswith("unreadable task")
    assert letter.raw == task_json.decode(errors="replace")
    assert [d.id for d in await queue.dead_letters()] == [bad]
    result = await queue.get_result(bad)
    assert result is not None
    assert result.status == "error"


async def test_a_list_full_of_garbage_is_worked_through_in_bounded_calls(queue: AsyncCaptchaQueue) -> None:
    await queue.client.rpush(queue.keys.queue("normal"), *[f"junk-{i}" for i in range(250)])
    good = await queue.submit("userrecaptcha", RC)
    calls = 0
    claims: list[Claim] = []
    while not claims:
        calls += 1
        assert calls <= 5, "the claim never got through the garbage"
        claims = await queue.claim("w", 1, block_s=0)
    assert claims[0].task.id == good
    assert calls == 3  # at most count + 100 entries popped per call
    assert (await queue.stats()).dead_letters == 250


@pytest.mark.parametrize("key_name", ["tasks", "state", "active", "counters", "high"])
async def test_a_key_of_the_wrong_type_is_refused_without_writing(
    queue: AsyncCaptchaQueue, key_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = queue.keys.queue("high") if key_name == "high" else getattr(queue.keys, key_name)
    await queue.client.set(key, "someone else's value")
    with pytest.raises(ScriptError, match="is a string"):
        await queue.submit("userrecaptcha", RC)
    with caplog.at_level(logging.ERROR, logger="captcha_queue.queue"):
        assert await queue.claim("w", 1, block_s=0.05) == []
    assert "is a string" in caplog.text
    assert await queue.client.get(key) == b"someone else's value"
    assert await queue.client.llen(queue.keys.queue("normal")) == 0


async def test_a_wake_key_of_the_wrong_type_heals(queue: AsyncCaptchaQueue) -> None:
    await queue.client.set(queue.keys.wake, "garbage")
    task_id = await queue.submit("userrecaptcha", RC)
    assert await queue.client.type(queue.keys.wake) == b"list"
    assert [c.task.id for c in await queue.claim("w", 1)] == [task_id]


async def test_malformed_results_and_events_are_skipped(queue: AsyncCaptchaQueue) -> None:
    await queue.client.hset(queue.keys.results, "broken", "{truncated")
    assert await queue.get_result("broken") is None
    await queue.client.xadd(queue.keys.events, {"id": "broken", "status": "success", "result": "{no"})
    task_id = await queue.submit("userrecaptcha", RC)
    [claim] = await queue.claim("w", 1)
    await queue.complete(claim, "t")
    events = queue.listen(from_id="0-0")
    first = await anext(events)
    await events.aclose()
    assert first.id == task_id


async def test_scripts_are_reloaded_after_script_flush(queue: AsyncCaptchaQueue) -> None:
    await queue.client.script_flush()
    task_id = await queue.submit("userrecaptcha", RC)
    await queue.client.script_flush()
    queue.config = type(queue.config)(submit_chunk=2)
    ids = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 5)  # pipelined script calls
    await queue.client.script_flush()
    claims = await queue.claim("w", 10)
    assert [c.task.id for c in claims] == [task_id, *ids]
    await queue.client.script_flush()
    assert (await queue.stats()).in_flight == 6  # stats pipelines its script with the pause read


async def test_connection_loss_raises_redis_unavailable() -> None:
    client = make_client(f"redis://127.0.0.1:{free_port()}/0")
    q = AsyncCaptchaQueue(client, namespace="unreachable")
    try:
        for call in (
            q.submit("userrecaptcha", RC),
            q.submit_many([TaskSpec("userrecaptcha", RC)]),
            q.get_result("x"),
            q.wait_result("x", timeout_s=1),
            q.cancel("x"),
            q.stats(),
            q.claim("w", 1),
            q.dead_letters(),
            q.epoch(),
        ):
            with pytest.raises(RedisUnavailable):
                await call
    finally:
        await q.aclose()
        await client.aclose()


async def test_a_connection_killed_while_idle_reconnects_or_raises_promptly(
    queue: AsyncCaptchaQueue, redis_url: str, namespace: str
) -> None:
    """redis-py < 8.2 raised on the next call after the server closed an idle connection; 8.2
    reconnects before sending. Either is fine; hanging or another error type is not."""
    client = make_client(redis_url)
    q = AsyncCaptchaQueue(client, namespace=namespace)
    try:
        await q.submit("userrecaptcha", RC)
        name = "victim-" + namespace
        await client.client_setname(name)
        for info in await queue.client.client_list():
            if info.get("name") == name:
                await queue.client.client_kill_filter(_id=info["id"])
        try:
            stats = await asyncio.wait_for(q.stats(), 10)
        except RedisUnavailable:
            pass
        else:
            assert stats.submitted == 1
    finally:
        await q.aclose()
        await client.aclose()


async def test_a_broken_connection_mid_life_raises_redis_unavailable(redis_url: str, namespace: str) -> None:
    """The network between client and server breaks (connections reset, reconnects refused): the
    next call raises RedisUnavailable at once, on every supported redis-py."""
    parts = urlsplit(redis_url)
    assert parts.hostname is not None
    assert parts.port is not None
    async with FaultProxy(parts.hostname, parts.port) as proxy:
        client = make_client(proxy.redis_url(password=parts.password))
        q = AsyncCaptchaQueue(client, namespace=namespace)
        try:
            await q.submit("userrecaptcha", RC)
            proxy.refuse(True)
            assert proxy.reset_all() >= 1
            with pytest.raises(RedisUnavailable):
                await asyncio.wait_for(q.stats(), 10)
        finally:
            await q.aclose()
            await client.aclose()

"""Push waiting: no race with completions, one shared subscription, millisecond wake-ups, reconnects."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from captcha_queue import AsyncCaptchaQueue, CaptchaQueue, InvalidArgument, Result, TaskSpec
from captcha_queue.queue._waiting import check_event_id, listen_events
from captcha_queue.store.keys import Keys

from .helpers import RC


async def finish(q: AsyncCaptchaQueue, n: int = 1) -> list[Result]:
    claims = await q.claim("w", n, block_s=0)
    return [await q.complete(c, f"token-{c.task.id}") for c in claims]


async def subscribers(client: aioredis.Redis) -> int:
    return len(await client.client_list(_type="pubsub"))


async def until(predicate_coro: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate_coro():  # type: ignore[operator]
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)


async def test_a_result_finished_before_the_wait_is_returned_at_once(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    [done] = await finish(queue)
    started = time.monotonic()
    assert await queue.wait_result(task_id, timeout_s=30) == done
    assert time.monotonic() - started < 1.0


async def test_the_waiter_wakes_within_milliseconds_of_completion(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    waiter = asyncio.create_task(queue.wait_result(task_id, timeout_s=30))
    await until(lambda: _one_subscriber(queue))
    await asyncio.sleep(0.05)  # let the waiter's first look at the results hash come back empty
    [claim] = await queue.claim("w", 1)
    await queue.complete(claim, "token")
    completed = time.monotonic()
    result = await waiter
    latency_s = time.monotonic() - completed
    assert result is not None
    assert result.id == task_id
    assert latency_s < 0.25  # milliseconds in practice; generous for a loaded 2-core machine


async def _one_subscriber(q: AsyncCaptchaQueue) -> bool:
    return await subscribers(q.client) >= 1


async def test_wait_returns_none_on_timeout(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    started = time.monotonic()
    assert await queue.wait_result(task_id, timeout_s=0.2) is None
    assert 0.2 <= time.monotonic() - started < 2.0


async def test_no_completion_slips_between_check_and_subscribe(queue: AsyncCaptchaQueue) -> None:
    ids = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 60)
    claims = await queue.claim("w", 60)
    # Waits start while completions land: each one is found by the read or by the announcement.
    waits = []
    for claim in claims:
        waits.append(asyncio.create_task(queue.wait_result(claim.task.id, timeout_s=10)))
        await queue.complete(claim, "token")
    results = await asyncio.gather(*waits)
    assert [r.id for r in results if r is not None] == ids


@pytest.mark.timeout(60)
async def test_thousands_of_waiters_share_one_subscription(queue: AsyncCaptchaQueue) -> None:
    n = 2000
    ids = await queue.submit_many([TaskSpec("turnstile", {"sitekey": "s", "pageurl": "https://x"})] * n)
    waits = [asyncio.create_task(queue.wait_result(task_id, timeout_s=30)) for task_id in ids]
    await until(lambda: _one_subscriber(queue))
    claims = await queue.claim("w", n)
    for claim in claims:
        await queue.complete(claim, "token")
    results = await asyncio.gather(*waits)
    assert all(r is not None for r in results)
    assert await subscribers(queue.client) == 1


async def test_as_completed_yields_finished_ones_first_then_in_completion_order(
    queue: AsyncCaptchaQueue,
) -> None:
    ids = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 4)
    claims = await queue.claim("w", 4)
    await queue.complete(claims[2], "early")
    seen: list[str] = []

    async def consume() -> None:
        async for result in queue.as_completed(ids, timeout_s=10):
            seen.append(result.id)

    consumer = asyncio.create_task(consume())
    await until(lambda: _async_len(seen, 1))
    for done, index in enumerate((3, 0, 1), start=2):
        await queue.complete(claims[index], "later")
        await until(lambda n=done: _async_len(seen, n))
    await consumer
    assert seen == [ids[2], ids[3], ids[0], ids[1]]


async def _async_len(items: list[str], n: int) -> bool:
    return len(items) >= n


async def test_as_completed_stops_at_its_timeout(queue: AsyncCaptchaQueue) -> None:
    ids = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 3)
    await finish(queue)
    started = time.monotonic()
    got = [r.id async for r in queue.as_completed(ids, timeout_s=0.3)]
    assert got == ids[:1]
    assert time.monotonic() - started < 2.0


async def test_the_waiter_reconnects_and_rechecks_after_losing_its_subscription(
    queue: AsyncCaptchaQueue,
) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    waiter = asyncio.create_task(queue.wait_result(task_id, timeout_s=20))
    await until(lambda: _one_subscriber(queue))
    [claim] = await queue.claim("w", 1)
    # Cut the subscription, then finish the task while it is down: the announcement is lost.
    await queue.client.client_kill_filter(_type="pubsub")
    await queue.complete(claim, "token")
    result = await asyncio.wait_for(waiter, 10)
    assert result is not None
    assert result.id == task_id


async def test_a_waiter_woken_by_an_announcement_does_not_read_the_result_back(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace)
    task_id = await q.submit("userrecaptcha", {"googlekey": "k" * 20, "pageurl": "https://example.com"})
    fetched: list[str] = []
    original = q.waiter.fetch
    first_check = asyncio.Event()

    async def counting_fetch(task_id: str) -> Result | None:
        fetched.append(task_id)
        found = await original(task_id)
        first_check.set()
        return found

    q.waiter.fetch = counting_fetch  # type: ignore[method-assign]  # a spy on the real fetch
    waiter = asyncio.create_task(q.wait_result(task_id, timeout_s=10))
    await asyncio.wait_for(first_check.wait(), 5)  # subscribed, checked once, nothing yet
    [claim] = await q.claim("w", 1)
    await q.complete(claim, "token")
    result = await waiter
    assert result is not None
    assert result.solution is not None
    assert result.solution.text == "token"
    assert fetched == [task_id]  # woken with the result in hand: no second read


# -- listen: a malformed from_id ----------------------------------------------------------------------

BAD_EVENT_IDS = [
    "bogus",
    "",
    "1-2-3",
    "-1",
    "1-",
    "1.5",
    " 1",
    "1\n",
    "$",
    "٣",
    "18446744073709551616-0",
    "0-18446744073709551616",
]
GOOD_EVENT_IDS = ["0", "0-0", "1795915811595-0", "1795915811595", "18446744073709551615-18446744073709551615"]


def closed_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


@pytest.mark.timeout(10)
@pytest.mark.parametrize("bad", BAD_EVENT_IDS)
async def test_listen_refuses_a_malformed_from_id_at_once_without_redis(bad: str) -> None:
    # Redis is not there: a check that needed it would raise RedisUnavailable (or retry) instead.
    async with AsyncCaptchaQueue.from_url(closed_url()) as q:
        with pytest.raises(InvalidArgument) as info:
            q.listen(from_id=bad)
        assert info.value.field == "from_id"
        with pytest.raises(InvalidArgument):
            q.listen_events(from_id=bad)
        with pytest.raises(InvalidArgument):
            await anext(listen_events(q.client, q.keys, bad))


@pytest.mark.timeout(10)
def test_the_blocking_listen_refuses_a_malformed_from_id_at_once() -> None:
    with CaptchaQueue.from_url(closed_url()) as q, pytest.raises(InvalidArgument):
        q.listen(from_id="bogus")


async def test_the_event_id_check_agrees_with_redis(queue: AsyncCaptchaQueue) -> None:
    for good in GOOD_EVENT_IDS:
        assert check_event_id(good) == good
        await queue.client.xread({queue.keys.events: good}, count=1)  # Redis takes it
    for bad in BAD_EVENT_IDS:
        # Redis takes these two, but they are refused here: "$" means "from now", which None says (and
        # None resumes correctly after a reconnect); " 1" is no id the stream ever hands out.
        if bad in ("$", " 1"):
            continue
        with pytest.raises(ResponseError, match="Invalid stream ID"):
            await queue.client.xread({queue.keys.events: bad}, count=1)


async def test_listen_from_a_valid_id_still_replays(queue: AsyncCaptchaQueue) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    await finish(queue)
    events = queue.listen_events(from_id="0")
    try:
        event_id, result = await asyncio.wait_for(anext(events), 5)
    finally:
        await events.aclose()
    assert result.id == task_id
    assert check_event_id(event_id) == event_id


class _CancelBecomesConnectionError(aioredis.Redis):
    """A client whose XREAD, cancelled, raises a connection error instead: what redis-py does at times
    under load (it closes the connection on the way out), which a retry loop would take for a lost
    connection and read on, never ending (a dashboard's shutdown hung on its event feed that way)."""

    reading: asyncio.Event

    async def xread(self, *args: Any, **kwargs: Any) -> Any:
        self.reading.set()
        try:
            return await super().xread(*args, **kwargs)
        except asyncio.CancelledError:
            raise redis.ConnectionError("Connection closed by server.") from None


@pytest.mark.timeout(30)
async def test_a_cancel_a_read_turns_into_a_connection_error_still_ends_listen_events(
    redis_url: str, namespace: str
) -> None:
    client = _CancelBecomesConnectionError(
        connection_pool=aioredis.BlockingConnectionPool.from_url(redis_url)
    )
    client.auto_close_connection_pool = True
    client.reading = asyncio.Event()

    async def consume() -> None:
        async for _ in listen_events(client, Keys(namespace)):
            pass

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(client.reading.wait(), 10)  # blocked in XREAD
        task.cancel()
        # Within a block of XREAD (5 s) whatever redis-py made of the cancel.
        done, _ = await asyncio.wait([task], timeout=8.0)
        assert done, "listen_events read on after its cancel"
        assert task.cancelled()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=5.0)
        await client.aclose()

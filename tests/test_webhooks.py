"""Webhooks end to end: real Redis, a real aiohttp receiver on loopback, real deliverer processes.

A task submitted with a pingback has its result delivered once it is final: signed, retried while
the receiver is down, sent again by another deliverer when one dies mid-send, refused for private
targets (at submit and at delivery), failed once too old (and visible in ``captcha-queue webhooks``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis.asyncio as aioredis

from captcha_queue import AsyncCaptchaQueue, CaptchaQueue, InvalidTask, TaskSpec
from captcha_queue.errors import InvalidArgument, ScriptError
from captcha_queue.webhooks import Delivery, Outbox, WebhookDeliverer, WebhookSettings, sign
from captcha_queue.webhooks._deliverer import backoff_s

from .helpers import RC, ProcessManager
from .webhooks_helpers import Receiver

SECRET = "s3cret-for-the-tests-0123456789"
EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "webhook_receiver.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("webhook_receiver_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


verify: Callable[..., bool] = _example().verify


def fast(**overrides: Any) -> WebhookSettings:
    """Settings that make a test quick: loopback allowed, short waits."""
    values: dict[str, Any] = {
        "secret": SECRET,
        "allow_private_targets": True,
        "timeout_s": 2.0,
        "lease_s": 3.0,
        "backoff_s": 0.05,
        "backoff_max_s": 0.2,
        "poll_s": 0.05,
    }
    return WebhookSettings(**(values | overrides))


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0, what: str = "") -> None:
    """Wait until ``check()`` holds (it reads Redis: there is no event to wait on across processes)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not await check():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def hq(redis_client: aioredis.Redis, namespace: str) -> AsyncIterator[AsyncCaptchaQueue]:
    """A queue that accepts loopback pingbacks (the tests' receiver)."""
    q = AsyncCaptchaQueue(redis_client, namespace=namespace, allow_private_targets=True)
    yield q
    await q.aclose()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def solved(q: AsyncCaptchaQueue, url: str, answer: str = "tok", **options: Any) -> str:
    """A task submitted with ``url`` as its pingback and completed with ``answer``, as a worker would."""
    task_id = await q.submit("userrecaptcha", RC, pingback=url, **options)
    (claim,) = await q.claim("test-worker", 1, block_s=2)
    assert claim.task_id == task_id
    await q.complete(claim, answer)
    return task_id


async def state_of(outbox: Outbox, task_id: str) -> Delivery:
    delivery = await outbox.get(task_id)
    assert delivery is not None
    return delivery


# -- delivered once, signed -----------------------------------------------------------------------


async def test_a_result_is_delivered_once_signed_and_recorded(
    hq: AsyncCaptchaQueue, receiver: Receiver, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    task_id = await solved(hq, receiver.url(), "03AGdBq24-answer")
    outbox = Outbox(redis_client, hq.namespace)
    async with WebhookDeliverer(redis_client, namespace=hq.namespace, settings=fast()) as deliverer:
        (request,) = await receiver.wait_for(1)
        await until(lambda: _state_is(outbox, task_id, "delivered"), what="delivered")
        assert await deliverer.deliver_due() is False  # nothing left: not sent twice
    assert len(receiver.requests) == 1

    assert request.method == "POST"
    assert request.path == "/hook"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.fields == {"id": task_id, "code": "03AGdBq24-answer", "status": "success"}
    assert request.headers["X-Captcha-Queue-Task"] == task_id
    assert request.headers["X-Captcha-Queue-Attempt"] == "1"
    assert request.delivery.startswith(task_id + ".")
    assert verify(SECRET, request.headers, request.payload)
    assert request.headers["X-Captcha-Queue-Signature"] == sign(
        SECRET, request.headers["X-Captcha-Queue-Timestamp"], request.body
    )
    assert not verify("another-secret", request.headers, request.payload)
    assert not verify(SECRET, request.headers, request.payload + b"&code=forged")
    stamp = int(request.headers["X-Captcha-Queue-Timestamp"])
    assert not verify(SECRET, request.headers, request.payload, now_s=stamp + 301)  # a replay, later

    delivery = await state_of(outbox, task_id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 1, 200)
    assert delivery.delivery == request.delivery
    assert delivery.lease is None
    assert (
        deliverer.registry.get_sample_value("captcha_queue_webhook_sends_total", {"outcome": "delivered"})
        == 1
    )
    # The secret is nowhere: not in Redis, not in the logs.
    for key in (hq.keys.webhooks, hq.keys.tasks, hq.keys.state, hq.keys.results):
        assert not [v for v in (await redis_client.hgetall(key)).values() if SECRET.encode() in v]
    assert SECRET not in caplog.text


async def _state_is(outbox: Outbox, task_id: str, state: str) -> bool:
    delivery = await outbox.get(task_id)
    return delivery is not None and delivery.state == state


async def test_get_and_json_formats_and_an_error_result(
    hq: AsyncCaptchaQueue, receiver: Receiver, redis_client: aioredis.Redis
) -> None:
    as_get = await hq.submit("userrecaptcha", RC, pingback=receiver.url("/g?client=7"), pingback_format="get")
    as_json = await hq.submit("userrecaptcha", RC, pingback=receiver.url("/j"), pingback_format="json")
    claims = {c.task_id: c for c in await hq.claim("w", 2, block_s=2)}
    await hq.complete(claims[as_get], "get-answer")
    await hq.fail(claims[as_json], "ERROR_CAPTCHA_UNSOLVABLE", "no luck")
    async with WebhookDeliverer(redis_client, namespace=hq.namespace, settings=fast()):
        requests = {r.path: r for r in await receiver.wait_for(2)}

    got = requests["/g"]
    assert got.method == "GET"
    assert got.body == b""
    assert got.fields == {"client": "7", "id": as_get, "code": "get-answer", "status": "success"}
    assert verify(SECRET, got.headers, got.payload)

    posted = requests["/j"]
    assert posted.headers["Content-Type"] == "application/json"
    document = json.loads(posted.body)
    assert (document["id"], document["code"], document["status"]) == (
        as_json,
        "ERROR_CAPTCHA_UNSOLVABLE",
        "error",
    )
    assert document["delivery"] == posted.delivery
    assert document["result"]["error_message"] == "no luck"
    assert document["result"]["attempts"] == 1
    assert verify(SECRET, posted.headers, posted.body)


async def test_the_jsonapi_format_posts_get_task_results_document(
    hq: AsyncCaptchaQueue, receiver: Receiver, redis_client: aioredis.Redis
) -> None:
    """Anti-Captcha's callbackUrl: getTaskResult's document and the task's id (a number when the id is
    one, as a gateway mints them; the queue's own ids stay strings), an error result as its error body."""
    ok = await hq.submit(
        "userrecaptcha", RC, pingback=receiver.url("/ok"), pingback_format="jsonapi", task_id="42"
    )
    bad = await hq.submit("userrecaptcha", RC, pingback=receiver.url("/bad"), pingback_format="jsonapi")
    claims = {c.task_id: c for c in await hq.claim("w", 2, block_s=2)}
    await hq.complete(claims[ok], "tok-42")
    await hq.fail(claims[bad], "ERROR_CAPTCHA_UNSOLVABLE", "no luck")
    async with WebhookDeliverer(redis_client, namespace=hq.namespace, settings=fast()):
        requests = {r.path: r for r in await receiver.wait_for(2)}
    solved = json.loads(requests["/ok"].body)
    assert solved["taskId"] == 42
    assert (solved["errorId"], solved["status"], solved["solution"]) == (0, "ready", {"token": "tok-42"})
    assert solved["solveCount"] == 1
    failed = json.loads(requests["/bad"].body)
    assert failed == {
        "taskId": bad,
        "errorId": 12,
        "errorCode": "ERROR_CAPTCHA_UNSOLVABLE",
        "errorDescription": "ERROR_CAPTCHA_UNSOLVABLE",
    }
    assert verify(SECRET, requests["/ok"].headers, requests["/ok"].body)


# -- the outbox is written by every final transition, and only for a pingback -----------------------


async def _finish_every_way(q: AsyncCaptchaQueue, pingback: str | None) -> dict[str, str]:
    """One task per final path (complete, fatal fail, dead-lettered, cancelled, expired by the worker,
    expired at claim, stalled past its attempts); their ids -> the final status each should get."""
    submit = q.submit
    expected: dict[str, str] = {}
    ok, fatal, dead, expire = [
        await submit("userrecaptcha", RC, pingback=pingback, max_attempts=1) for _ in range(4)
    ]
    claims = {c.task_id: c for c in await q.claim("w", 4, block_s=2)}
    await q.complete(claims[ok], "token")
    await q.fail(claims[fatal], "ERROR_CAPTCHA_UNSOLVABLE")
    await q.fail(claims[dead], "TIMEOUT", retry_in_s=0.0)  # no attempts left: dead-lettered
    await q.expire(claims[expire])
    expected |= {ok: "success", fatal: "error", dead: "error", expire: "expired"}
    cancelled = await submit("userrecaptcha", RC, pingback=pingback)
    assert await q.cancel(cancelled)
    expected[cancelled] = "cancelled"
    late = await submit("userrecaptcha", RC, pingback=pingback, expires_in_s=0.001, priority="high")
    stalled = await submit("userrecaptcha", RC, pingback=pingback, max_attempts=1, priority="high")
    await asyncio.sleep(0.01)  # late's deadline passes (Redis time)
    (held,) = await q.claim("w", 1, lease_s=0.05, block_s=1)  # stalled; late is expired on the way
    assert held.task_id == stalled
    await asyncio.sleep(0.1)  # its lease lapses
    await q.reap()
    expected |= {late: "expired", stalled: "error"}
    for task_id, status in expected.items():
        result = await q.get_result(task_id)
        assert result is not None, task_id
        assert result.status == status, (task_id, status, result)
    return expected


async def test_every_final_path_writes_its_delivery_with_the_result(
    hq: AsyncCaptchaQueue, redis_client: aioredis.Redis
) -> None:
    expected = await _finish_every_way(hq, "https://example.com/hook")
    outbox = Outbox(redis_client, hq.namespace)
    deliveries = {d.task: d for d in await outbox.deliveries()}
    assert set(deliveries) == set(expected)
    for task_id, status in expected.items():
        delivery = deliveries[task_id]
        assert (delivery.status, delivery.state, delivery.attempts) == (status, "pending", 0)
        stored = await redis_client.hget(hq.keys.results, task_id)
        assert stored is not None
        assert json.loads(delivery.result) == json.loads(stored)
    assert await redis_client.zcard(hq.keys.webhooks_due) == len(expected)


async def test_finishing_without_a_pingback_writes_nothing_to_the_outbox(
    hq: AsyncCaptchaQueue, redis_client: aioredis.Redis
) -> None:
    await _finish_every_way(hq, None)
    assert await redis_client.exists(hq.keys.webhooks, hq.keys.webhooks_due) == 0


# -- retries, leases, crashes ----------------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_a_receiver_down_for_a_while_gets_every_result_once_it_is_back(
    hq: AsyncCaptchaQueue, redis_client: aioredis.Redis
) -> None:
    down = Receiver()  # not started yet: connections are refused
    ids = [await solved(hq, down.url(), f"answer-{n}") for n in range(5)]
    outbox = Outbox(redis_client, hq.namespace)

    async def all_retried() -> bool:
        found = [await outbox.get(t) for t in ids]
        return all(d is not None and d.attempts >= 2 and d.state == "pending" for d in found)

    async with WebhookDeliverer(redis_client, namespace=hq.namespace, settings=fast()):
        await until(all_retried, what="every delivery tried twice")
        first = await state_of(outbox, ids[0])
        assert first.last_error is not None
        assert first.last_error.startswith("cannot connect")
        await down.start()
        try:
            await until(
                lambda: _all_in(outbox, ids, "delivered"), timeout_s=30, what="every delivery delivered"
            )
        finally:
            await down.stop()
    answers = {r.fields["id"]: r.fields["code"] for r in down.requests}
    assert answers == {task_id: f"answer-{n}" for n, task_id in enumerate(ids)}
    assert all(verify(SECRET, r.headers, r.payload) for r in down.requests)


async def _all_in(outbox: Outbox, ids: list[str], state: str) -> bool:
    return all([await _state_is(outbox, t, state) for t in ids])


@pytest.mark.timeout(90)
async def test_a_deliverer_killed_mid_send_leaves_the_delivery_to_another(
    hq: AsyncCaptchaQueue,
    receiver: Receiver,
    redis_client: aioredis.Redis,
    processes: ProcessManager,
    subprocess_env: dict[str, str],
) -> None:
    receiver.hold = 1  # the first send is never answered: its deliverer dies waiting
    task_id = await solved(hq, receiver.url(), "the-answer")
    env = subprocess_env | {"CAPTCHA_QUEUE_WEBHOOK_SECRET": SECRET}
    argv = ["-m", "captcha_queue", "webhooks", "run", "--allow-private-targets"]
    argv += ["--timeout-s", "1.5", "--lease-s", "2", "--poll-s", "0.05"]
    first = processes.spawn_python(argv, env)
    (held,) = await receiver.wait_for(1, timeout_s=30)
    processes.kill(first, signal.SIGKILL)
    first.wait(timeout=10)
    outbox = Outbox(redis_client, hq.namespace)
    leased = await state_of(outbox, task_id)
    assert (leased.state, leased.attempts) == ("pending", 1)
    assert leased.leased_until is not None

    async with WebhookDeliverer(redis_client, namespace=hq.namespace, settings=fast()) as second:
        _held, again = await receiver.wait_for(2, timeout_s=20)
        await until(lambda: _state_is(outbox, task_id, "delivered"), what="delivered")
    assert again.delivery == held.delivery  # the receiver can tell it is the same delivery
    assert again.headers["X-Captcha-Queue-Attempt"] == "2"
    assert verify(SECRET, held.headers, held.payload)
    assert verify(SECRET, again.headers, again.payload)
    done = await state_of(outbox, task_id)
    assert (done.attempts, done.deliverer) == (2, second.deliverer_id)
    assert done.deliverer != leased.deliverer


async def test_a_lapsed_lease_cannot_settle_and_the_new_holder_can(
    hq: AsyncCaptchaQueue, redis_client: aioredis.Redis
) -> None:
    task_id = await solved(hq, "https://example.com/hook")
    outbox = Outbox(redis_client, hq.namespace)
    times = {"max_age_ms": 60_000, "keep_ms": 60_000}
    _n, (old,) = await outbox.claim(10, lease_ms=50, deliverer="a", **times)
    _n, none = await outbox.claim(10, lease_ms=50, deliverer="b", **times)
    assert none == []  # leased: not due
    await asyncio.sleep(0.1)
    _n, (new,) = await outbox.claim(10, lease_ms=10_000, deliverer="b", **times)
    assert new.attempts == 2
    assert new.lease != old.lease
    assert (
        await outbox.settle(old, "delivered", max_age_ms=60_000, keep_ms=60_000) is None
    )  # fenced: writes nothing
    assert (await state_of(outbox, task_id)).state == "pending"
    assert (
        await outbox.settle(
            new, "retry", delay_ms=5_000, status=503, error="HTTP 503", max_age_ms=60_000, keep_ms=60_000
        )
        == "pending"
    )
    pending = await state_of(outbox, task_id)
    assert (pending.last_status, pending.last_error, pending.lease) == (503, "HTTP 503", None)
    assert pending.next_ms is not None
    assert pending.next_ms >= pending.created_ms + 5_000


async def test_an_unusable_record_is_failed_with_a_reason_not_sent(
    hq: AsyncCaptchaQueue, redis_client: aioredis.Redis
) -> None:
    outbox = Outbox(redis_client, hq.namespace)
    await redis_client.hset(hq.keys.webhooks, "forged", '{"state": "pending", "url": 7}')
    await redis_client.zadd(hq.keys.webhooks_due, {"forged": 0})
    handled, leased = await outbox.claim(10, lease_ms=1000, max_age_ms=60_000, keep_ms=60_000, deliverer="a")
    assert (handled, leased) == (1, [])
    forged = await state_of(outbox, "forged")
    assert forged.state == "failed"
    assert forged.reason is not None
    assert "unusable" in forged.reason


# -- SSRF ------------------------------------------------------------------------------------------

REFUSED = [
    "http://127.0.0.1/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10:8080/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8000/",
    "http://[::ffff:127.0.0.1]/",
    "http://[fd00::1]/",
    "http://0x7f.1/",
    "http://2130706433/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://100.64.0.1/",
    "http://240.0.0.1/",
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "http://user:password@example.com/hook",
    "example.com/hook",
    "http:///hook",
    "http://exa mple.com/",
    "http://example.com/\u00e9",
    "http://example.com:0/",
    "http://example.com:99999/",
    "https://example.com/" + "a" * 2048,
    "",
]


async def test_private_and_malformed_targets_are_refused_at_submit_and_nothing_is_written(
    queue: AsyncCaptchaQueue, redis_client: aioredis.Redis, sync_queue: CaptchaQueue
) -> None:
    for url in REFUSED:
        with pytest.raises(InvalidTask) as refused:
            await queue.submit("userrecaptcha", RC, pingback=url)
        assert refused.value.field == "pingback", url
    with pytest.raises(InvalidTask) as refused:
        await queue.submit("userrecaptcha", RC, pingback=7)  # type: ignore[arg-type]
    assert refused.value.field == "pingback"
    with pytest.raises(InvalidTask) as refused:
        await queue.submit("userrecaptcha", RC, pingback="https://example.com/", pingback_format="xml")  # type: ignore[arg-type]
    assert refused.value.field == "pingback_format"
    with pytest.raises(InvalidTask, match="task 1 of the batch"):
        await queue.submit_many(
            [
                TaskSpec("userrecaptcha", RC, pingback="https://example.com/"),
                TaskSpec("userrecaptcha", RC, pingback=REFUSED[0]),
            ]
        )
    with pytest.raises(InvalidTask):
        await queue.submit_many([{"method": "userrecaptcha", "params": RC, "pingback": "http://10.0.0.1/"}])
    with pytest.raises(InvalidTask):
        sync_queue.submit("userrecaptcha", RC, pingback="http://169.254.169.254/")
    assert [k async for k in redis_client.scan_iter(match="{" + queue.namespace + "}*")] == []
    # A public target is accepted, a name is not resolved at submit, and the twin takes it too.
    assert await queue.submit("userrecaptcha", RC, pingback="https://hooks.example.com/captcha?x=1")
    assert sync_queue.submit("userrecaptcha", RC, pingback="http://localhost:9/", pingback_format="json")


async def test_private_targets_are_refused_again_at_delivery(
    hq: AsyncCaptchaQueue, queue: AsyncCaptchaQueue, receiver: Receiver, redis_client: aioredis.Redis
) -> None:
    # A name (accepted at submit) that resolves to loopback, and a literal loopback address written by
    # a producer that allowed it: a deliverer that does not allow private targets sends neither.
    by_name = await solved(queue, f"http://localhost:{receiver.port}/hook")
    literal = await solved(hq, receiver.url())
    outbox = Outbox(redis_client, hq.namespace)
    async with WebhookDeliverer(
        redis_client, namespace=hq.namespace, settings=fast(allow_private_targets=False)
    ) as deliverer:
        await until(lambda: _all_in(outbox, [by_name, literal], "failed"), what="both refused")
    assert receiver.requests == []
    named, lit = await state_of(outbox, by_name), await state_of(outbox, literal)
    assert named.reason is not None
    assert "localhost resolves to 127.0.0.1 is a loopback address" in named.reason
    assert lit.reason is not None
    assert "refused: pingback refused: 127.0.0.1 is a loopback address" in lit.reason
    assert (
        deliverer.registry.get_sample_value("captcha_queue_webhook_sends_total", {"outcome": "failed"}) == 2
    )


# -- settings and the backoff ----------------------------------------------------------------------


def test_the_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    for attempts, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0), (500, 30.0)):
        for _ in range(50):
            assert ceiling / 2 <= backoff_s(attempts, 1.0, 30.0) <= ceiling


def test_bad_settings_are_refused_naming_the_field_and_the_secret_stays_hidden() -> None:
    for bad, field in (
        ({"lease_s": 5.0, "timeout_s": 5.0}, "lease_s"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"concurrency": 0}, "concurrency"),
        ({"backoff_s": 10.0, "backoff_max_s": 1.0}, "backoff_max_s"),
        ({"secret": ""}, "secret"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            WebhookSettings(**bad)
        assert refused.value.field == field
    assert SECRET not in repr(WebhookSettings(secret=SECRET))


@pytest.mark.parametrize("status", [503, 302])
async def test_an_answer_that_is_not_2xx_is_retried_and_recorded_a_redirect_is_not_followed(
    hq: AsyncCaptchaQueue, receiver: Receiver, redis_client: aioredis.Redis, status: int
) -> None:
    receiver.status = status
    task_id = await solved(hq, receiver.url())
    outbox = Outbox(redis_client, hq.namespace)

    async def tried_twice() -> bool:
        return (await state_of(outbox, task_id)).attempts >= 2

    async with WebhookDeliverer(redis_client, namespace=hq.namespace, settings=fast()):
        await until(tried_twice, what="two sends")
        refused = await state_of(outbox, task_id)
        receiver.status = 200
        await until(lambda: _state_is(outbox, task_id, "delivered"), what="delivered")
    assert (refused.state, refused.last_status) == ("pending", status)
    assert refused.last_error == f"HTTP {status}: not now"
    assert {r.path for r in receiver.requests} == {"/hook"}  # the Location of a 302 was never asked for
    assert len({r.delivery for r in receiver.requests}) == 1


async def test_an_outbox_key_of_another_type_refuses_the_finish_or_skips_only_the_delivery(
    hq: AsyncCaptchaQueue, redis_client: aioredis.Redis
) -> None:
    await redis_client.set(hq.keys.webhooks, "someone else's")
    task_id = await hq.submit("userrecaptcha", RC, pingback="https://example.com/hook")
    (claim,) = await hq.claim("w", 1, block_s=2)
    with pytest.raises(ScriptError, match="webhooks is a string"):
        await hq.complete(claim, "token")
    assert await hq.status(task_id) == "active"  # nothing written: the task can still be finished
    assert await hq.get_result(task_id) is None
    # A loop script (the claim path expiring a task) finishes the task and skips only its delivery.
    late = await hq.submit("userrecaptcha", RC, pingback="https://example.com/hook", expires_in_s=0.001)
    await asyncio.sleep(0.01)
    assert await hq.claim("w", 1, block_s=0) == []
    result = await hq.get_result(late)
    assert result is not None
    assert result.status == "expired"
    assert await redis_client.get(hq.keys.webhooks) == b"someone else's"
    await redis_client.delete(hq.keys.webhooks)
    await hq.complete(claim, "token")
    assert (await state_of(Outbox(redis_client, hq.namespace), task_id)).status == "success"


async def test_malformed_outbox_calls_are_refused_and_write_nothing(
    hq: AsyncCaptchaQueue, redis_client: aioredis.Redis
) -> None:
    task_id = await solved(hq, "https://example.com/hook")
    outbox = Outbox(redis_client, hq.namespace)
    before = (
        await redis_client.hgetall(hq.keys.webhooks),
        await redis_client.zrange(hq.keys.webhooks_due, 0, -1, withscores=True),
    )
    with pytest.raises(ScriptError, match="malformed arguments"):
        await outbox.claim(0, lease_ms=1000, max_age_ms=1000, keep_ms=1000, deliverer="a")
    with pytest.raises(ScriptError, match="malformed arguments"):
        await outbox.claim(5, lease_ms=-1, max_age_ms=1000, keep_ms=1000, deliverer="a")
    pending = await state_of(outbox, task_id)
    with pytest.raises(ScriptError, match="malformed arguments"):
        await outbox.settle(pending, "retry", max_age_ms=1000, keep_ms=1000)  # no lease token
    for bad in ("", "x" * 300):
        with pytest.raises(InvalidArgument):
            await outbox.retry(bad)
    with pytest.raises(InvalidArgument):
        await outbox.deliveries(state="lost")  # type: ignore[arg-type]
    assert await outbox.retry("no-such-task") is False
    after = (
        await redis_client.hgetall(hq.keys.webhooks),
        await redis_client.zrange(hq.keys.webhooks_due, 0, -1, withscores=True),
    )
    assert after == before

"""The gateway's protocols with raw HTTP, in the style of a scraper's own loop: submit, poll, answers,
errors. The gateway is a real HTTP server in the test's loop; tasks are finished through the queue's
worker API (claim + complete/fail), as a worker would."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from captcha_queue import AsyncCaptchaQueue, Solution
from captcha_queue.gateway import RunningGateway
from captcha_queue.store.keys import GatewayKeys

from .gateway_helpers import new_key, png, png_b64, serve
from .helpers import claim_all

NOT_AN_IMAGE = base64.b64encode(b"not an image, " * 20).decode()
RC = {"googlekey": "6Le-site-key", "pageurl": "https://example.com/login"}


@pytest.fixture
async def gateway(redis_client: aioredis.Redis, redis_url: str) -> AsyncIterator[RunningGateway]:
    async with serve(redis_client, redis_url) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def key(redis_client: aioredis.Redis, namespace: str) -> str:
    return await new_key(redis_client, namespace)


async def get(http: aiohttp.ClientSession, url: str, **params: str) -> str:
    async with http.get(url, params=params) as resp:
        assert resp.status == 200
        return await resp.text()


async def post(http: aiohttp.ClientSession, url: str, data: object) -> str:
    async with http.post(url, data=data) as resp:
        assert resp.status == 200
        return await resp.text()


async def finish_one(queue: AsyncCaptchaQueue, solution: Solution | str) -> str:
    [claim] = await claim_all(queue, 1)
    await queue.complete(claim, solution)
    return claim.task.id


async def test_submit_poll_answer_in_plain_text_and_json(
    gateway: RunningGateway, http: aiohttp.ClientSession, key: str, queue: AsyncCaptchaQueue
) -> None:
    base = gateway.base_url
    body = await get(http, f"{base}/in.php", key=key, method="userrecaptcha", **RC)
    assert body.startswith("OK|")
    task_id = body[3:]
    assert task_id.isdigit()
    assert int(task_id) < 2**31
    assert await get(http, f"{base}/res.php", key=key, action="get", id=task_id) == "CAPCHA_NOT_READY"
    not_ready = json.loads(await get(http, f"{base}/res.php", key=key, action="get", id=task_id, json="1"))
    assert not_ready == {"status": 0, "request": "CAPCHA_NOT_READY"}
    task = await queue.client.hget(queue.keys.tasks, task_id)
    assert isinstance(task, bytes)
    assert b'"googlekey":"6Le-site-key"' in task
    assert key.encode() not in task
    assert await finish_one(queue, "TOKEN-123") == task_id
    assert await get(http, f"{base}/res.php", key=key, action="get", id=task_id) == "OK|TOKEN-123"
    solved = json.loads(await get(http, f"{base}/res.php", key=key, action="get", id=task_id, json="1"))
    assert solved == {"status": 1, "request": "TOKEN-123"}


async def test_post_form_and_multipart_upload(
    gateway: RunningGateway, http: aiohttp.ClientSession, key: str, queue: AsyncCaptchaQueue
) -> None:
    base = gateway.base_url
    form = json.loads(
        await post(http, f"{base}/in.php", {"key": key, "method": "base64", "body": png_b64(), "json": "1"})
    )
    assert form["status"] == 1
    assert str(form["request"]).isdigit()
    data = aiohttp.FormData()
    data.add_field("key", key)
    data.add_field("method", "post")
    data.add_field("file", png(), filename="captcha.png", content_type="image/png")
    multipart = await post(http, f"{base}/in.php", data)
    assert multipart.startswith("OK|")
    claims = await claim_all(queue, 2)
    by_id = {c.task.id: c.task for c in claims}
    uploaded = by_id[multipart[3:]]
    assert uploaded.method == "base64"
    assert uploaded.params["body"] == png_b64()


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"method": "userrecaptcha", "pageurl": "https://example.com"}, "ERROR_GOOGLEKEY"),
        ({"method": "userrecaptcha", "googlekey": "k"}, "ERROR_PAGEURL"),
        ({"method": "userrecaptcha", "googlekey": "k", "pageurl": "ftp://x"}, "ERROR_PAGEURL"),
        ({"method": "base64"}, "ERROR_ZERO_CAPTCHA_FILESIZE"),
        (
            {
                "method": "base64",
                "body": NOT_AN_IMAGE,
            },
            "ERROR_IMAGE_TYPE_NOT_SUPPORTED",
        ),
        ({"method": "nonsense"}, "ERROR_BAD_PARAMETERS"),
        ({}, "ERROR_BAD_PARAMETERS"),
        (
            {"method": "turnstile", "sitekey": "s", "pageurl": "https://e.com", "proxy": "not a proxy"},
            "ERROR_BAD_PROXY",
        ),
        ({"method": "base64", "body": png_b64(), "numeric": "9"}, "ERROR_BAD_PARAMETERS"),
    ],
)
async def test_bad_submissions_get_the_services_code_and_write_nothing(
    gateway: RunningGateway,
    http: aiohttp.ClientSession,
    key: str,
    queue: AsyncCaptchaQueue,
    params: dict[str, str],
    code: str,
) -> None:
    base = gateway.base_url
    assert await get(http, f"{base}/in.php", key=key, **params) == code
    answer = json.loads(await get(http, f"{base}/in.php", key=key, json="1", **params))
    assert answer == {"status": 0, "request": code}
    assert await queue.client.hlen(queue.keys.tasks) == 0


async def test_key_errors(
    gateway: RunningGateway, http: aiohttp.ClientSession, key: str, queue: AsyncCaptchaQueue
) -> None:
    base = gateway.base_url
    assert (
        await get(http, f"{base}/in.php", key="short", method="userrecaptcha", **RC) == "ERROR_WRONG_USER_KEY"
    )
    assert await get(http, f"{base}/in.php", method="userrecaptcha", **RC) == "ERROR_WRONG_USER_KEY"
    unknown = "f" * 32
    assert (
        await get(http, f"{base}/in.php", key=unknown, method="userrecaptcha", **RC)
        == "ERROR_KEY_DOES_NOT_EXIST"
    )
    assert await get(http, f"{base}/res.php", key=unknown, action="getbalance") == "ERROR_KEY_DOES_NOT_EXIST"
    assert await queue.client.hlen(queue.keys.tasks) == 0


async def test_res_php_ids_actions_and_errors(
    gateway: RunningGateway,
    http: aiohttp.ClientSession,
    key: str,
    queue: AsyncCaptchaQueue,
    redis_client: aioredis.Redis,
    namespace: str,
) -> None:
    base = gateway.base_url
    first = (await get(http, f"{base}/in.php", key=key, method="userrecaptcha", **RC))[3:]
    second = (await get(http, f"{base}/in.php", key=key, method="userrecaptcha", **RC))[3:]
    [claim, _] = await claim_all(queue, 2)
    await queue.complete(claim, "T1")
    done, pending = (first, second) if claim.task.id == first else (second, first)
    ids = f"{first},{second},123,abc"
    multi = await get(http, f"{base}/res.php", key=key, action="get", ids=ids)
    expected = {done: "T1", pending: "CAPCHA_NOT_READY"}
    assert multi == f"{expected[first]}|{expected[second]}|ERROR_WRONG_CAPTCHA_ID|ERROR_WRONG_ID_FORMAT"
    assert (
        await get(http, f"{base}/res.php", key=key, action="get", id="999999999") == "ERROR_WRONG_CAPTCHA_ID"
    )
    assert await get(http, f"{base}/res.php", key=key, action="get", id="12ab") == "ERROR_WRONG_ID_FORMAT"
    assert await get(http, f"{base}/res.php", key=key) == "ERROR_EMPTY_ACTION"
    assert await get(http, f"{base}/res.php", key=key, action="dance") == "ERROR_BAD_PARAMETERS"
    assert float(await get(http, f"{base}/res.php", key=key, action="getbalance")) == 100.0
    assert json.loads(await get(http, f"{base}/res.php", key=key, action="getbalance", json="1")) == {
        "status": 1,
        "request": "100.000",
    }
    threads = json.loads(await get(http, f"{base}/res.php", key=key, action="threadsinfo", json="1"))
    assert threads["status"] == 1
    assert threads["threads"] == 0
    assert threads["working_threads"] == 0
    # Another key of the same namespace does not see this key's tasks.
    other = await new_key(redis_client, namespace)
    assert await get(http, f"{base}/res.php", key=other, action="get", id=done) == "ERROR_WRONG_CAPTCHA_ID"


async def test_failed_and_structured_answers(
    gateway: RunningGateway, http: aiohttp.ClientSession, key: str, queue: AsyncCaptchaQueue
) -> None:
    base = gateway.base_url
    geetest = {"method": "geetest", "gt": "g" * 32, "challenge": "c" * 32, "pageurl": "https://e.com"}
    task_id = (await get(http, f"{base}/in.php", key=key, **geetest))[3:]
    data = {"challenge": "x", "validate": "y", "seccode": "z|jordan"}
    await finish_one(queue, Solution(text=json.dumps(data), data=data))
    answer = json.loads(await get(http, f"{base}/res.php", key=key, action="get", id=task_id, json="1"))
    assert answer == {"status": 1, "request": data}  # an object, as the service sends it
    failing = (await get(http, f"{base}/in.php", key=key, method="userrecaptcha", **RC))[3:]
    [claim] = await claim_all(queue, 1)
    await queue.fail(claim, "ERROR_CAPTCHA_UNSOLVABLE")
    assert await get(http, f"{base}/res.php", key=key, action="get", id=failing) == "ERROR_CAPTCHA_UNSOLVABLE"


async def test_enterprise_answer_in_result_and_request_with_user_agent(
    gateway: RunningGateway, http: aiohttp.ClientSession, key: str, queue: AsyncCaptchaQueue
) -> None:
    base = gateway.base_url
    task_id = (await get(http, f"{base}/in.php", key=key, method="userrecaptcha", enterprise="1", **RC))[3:]
    await finish_one(queue, Solution(text="ENT", user_agent="UA/1"))
    answer = json.loads(await get(http, f"{base}/res.php", key=key, action="get", id=task_id, json="1"))
    assert answer == {"status": 1, "request": "ENT", "result": "ENT", "user_agent": "UA/1"}


async def test_limits_refuse_with_codes_and_write_nothing(
    redis_client: aioredis.Redis,
    redis_url: str,
    http: aiohttp.ClientSession,
    namespace: str,
    queue: AsyncCaptchaQueue,
) -> None:
    async with serve(redis_client, redis_url, max_body_bytes=4096, max_params=8) as running:
        base = running.base_url
        key = await new_key(redis_client, namespace, max_in_flight=2)
        big = {"key": key, "method": "base64", "body": "A" * 8000}
        assert await post(http, f"{base}/in.php", big) == "ERROR_TOO_BIG_CAPTCHA_FILESIZE"
        many = {f"p{n}": "x" for n in range(10)}
        assert (
            await get(http, f"{base}/in.php", key=key, method="userrecaptcha", **RC, **many)
            == "ERROR_BAD_PARAMETERS"
        )
        assert await queue.client.hlen(queue.keys.tasks) == 0
        first = await get(http, f"{base}/in.php", key=key, method="userrecaptcha", **RC)
        second = await get(http, f"{base}/in.php", key=key, method="userrecaptcha", **RC)
        assert first.startswith("OK|")
        assert second.startswith("OK|")
        assert (
            await get(http, f"{base}/in.php", key=key, method="userrecaptcha", **RC)
            == "ERROR_NO_SLOT_AVAILABLE"
        )
        assert await queue.client.hlen(queue.keys.tasks) == 2
        await finish_one(queue, "T")  # one finished: its place in the quota is free again
        assert (await get(http, f"{base}/in.php", key=key, method="userrecaptcha", **RC)).startswith("OK|")
        limited = await new_key(redis_client, namespace, rate_per_s=2)
        answers = [await get(http, f"{base}/res.php", key=limited, action="getbalance") for _ in range(5)]
        assert "ERROR_TOO_MUCH_REQUESTS" in answers  # 2 a second: 5 back to back cannot all pass
        assert answers[0] == "100.000"


async def test_revoked_key_stops_working_after_the_cache(
    redis_client: aioredis.Redis, redis_url: str, http: aiohttp.ClientSession, namespace: str
) -> None:
    from captcha_queue.gateway import list_keys, revoke_key

    async with serve(redis_client, redis_url, key_cache_s=0) as running:
        key = await new_key(redis_client, namespace)
        assert await get(http, f"{running.base_url}/res.php", key=key, action="getbalance") == "100.000"
        [record] = [r for r in await list_keys(redis_client) if r.namespace == namespace]
        stored = await redis_client.hgetall(GatewayKeys().clients)
        assert all(key not in str(k) + str(v) for k, v in stored.items())  # only its hash is stored
        assert await revoke_key(redis_client, record.id)
        assert (
            await get(http, f"{running.base_url}/res.php", key=key, action="getbalance")
            == "ERROR_KEY_DOES_NOT_EXIST"
        )


async def test_json_api_create_poll_balance_and_errors(
    gateway: RunningGateway, http: aiohttp.ClientSession, key: str, queue: AsyncCaptchaQueue
) -> None:
    base = gateway.base_url

    async def call(endpoint: str, body: object) -> dict[str, object]:
        async with http.post(f"{base}/{endpoint}", json=body) as resp:
            assert resp.status == 200
            document: dict[str, object] = await resp.json()
            return document

    task = {"type": "RecaptchaV2TaskProxyless", "websiteURL": "https://e.com/p", "websiteKey": "6Le-k"}
    created = await call("createTask", {"clientKey": key, "task": task})
    assert created["errorId"] == 0
    assert isinstance(created["taskId"], int)
    poll = {"clientKey": key, "taskId": created["taskId"]}
    assert await call("getTaskResult", poll) == {"errorId": 0, "status": "processing"}
    [claim] = await claim_all(queue, 1)
    assert claim.task.method == "userrecaptcha"
    assert claim.task.params["googlekey"] == "6Le-k"
    await queue.complete(claim, "TOK")
    ready = await call("getTaskResult", poll)
    assert ready["status"] == "ready"
    assert ready["solution"] == {"gRecaptchaResponse": "TOK", "token": "TOK"}
    assert await call("getBalance", {"clientKey": key}) == {"errorId": 0, "balance": 100.0}
    bad_key = await call("createTask", {"clientKey": "x" * 32, "task": task})
    assert bad_key["errorId"] == 1
    assert bad_key["errorCode"] == "ERROR_KEY_DOES_NOT_EXIST"
    assert (await call("createTask", {"clientKey": key}))["errorCode"] == "ERROR_TASK_ABSENT"
    unsupported = await call("createTask", {"clientKey": key, "task": {"type": "NoSuchCaptchaTask"}})
    assert unsupported["errorId"] == 23
    # a type the workers solve is supported: without its fields it is a param error, not error 23
    empty = await call("createTask", {"clientKey": key, "task": {"type": "HCaptchaTask"}})
    assert empty["errorCode"] == "ERROR_BAD_PARAMETERS"  # no sitekey (checked first)
    missing = await call(
        "createTask",
        {"clientKey": key, "task": {"type": "TurnstileTaskProxyless", "websiteURL": "https://e.com"}},
    )
    assert missing["errorCode"] == "ERROR_BAD_PARAMETERS"
    unknown = await call("getTaskResult", {"clientKey": key, "taskId": 999})
    assert unknown["errorId"] == 16
    assert unknown["errorCode"] == "ERROR_NO_SUCH_CAPCHA_ID"
    image = await call(
        "createTask", {"clientKey": key, "task": {"type": "ImageToTextTask", "body": png_b64(), "case": True}}
    )
    [claim] = await claim_all(queue, 1)
    assert claim.task.method == "base64"
    assert claim.task.params["regsense"] == "1"
    await queue.complete(claim, "abc12")
    solved = await call("getTaskResult", {"clientKey": key, "taskId": image["taskId"]})
    assert solved["solution"] == {"text": "abc12"}
    assert await queue.client.hlen(queue.keys.tasks) == 2


async def test_health_endpoints(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    assert await get(http, f"{gateway.base_url}/healthz") == "ok"
    async with http.get(f"{gateway.base_url}/readyz") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ready"


async def test_pingback_is_taken_out_of_the_task(
    gateway: RunningGateway, http: aiohttp.ClientSession, key: str, queue: AsyncCaptchaQueue
) -> None:
    base = gateway.base_url
    reply = await get(
        http,
        f"{base}/in.php",
        key=key,
        method="userrecaptcha",
        pingback="https://hooks.example/x",
        soft_id="7",
        **RC,
    )
    [claim] = await claim_all(queue, 1)
    assert claim.task.id == reply[3:]
    assert set(claim.task.params) == {"googlekey", "pageurl"}  # the provider never sees the client's URL


def test_pingback_arg_reads_either_spelling() -> None:
    from captcha_queue.gateway._legacy import _pingback_arg

    params = {"callback": " https://a.example/cb ", "pageurl": "https://e.com"}
    assert _pingback_arg(params) == "https://a.example/cb"
    assert params == {"pageurl": "https://e.com"}
    assert _pingback_arg({"pingback": ""}) is None


async def test_submit_takes_a_caller_minted_task_id_and_refuses_a_bad_one(queue: AsyncCaptchaQueue) -> None:
    from captcha_queue import InvalidTask

    assert await queue.submit("userrecaptcha", RC, task_id="100000042") == "100000042"
    assert await queue.status("100000042") == "queued"
    for bad in ("", "a b", "x" * 65, "id/1"):
        with pytest.raises(InvalidTask):
            await queue.submit("userrecaptcha", RC, task_id=bad)
    assert await queue.client.hlen(queue.keys.tasks) == 1


async def test_a_get_with_an_image_in_its_query_is_served(
    gateway: RunningGateway, http: aiohttp.ClientSession, key: str, queue: AsyncCaptchaQueue
) -> None:
    from .gateway_helpers import png as make_png

    body = base64.b64encode(make_png(200, 40)).decode()
    assert len(body) > 8190  # aiohttp's default limit of a request line
    reply = await get(http, f"{gateway.base_url}/in.php", key=key, method="base64", body=body)
    assert reply.startswith("OK|")


async def test_redis_unreachable_is_the_retryable_service_error(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    from captcha_queue.gateway import GatewaySettings, run_gateway

    from .helpers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    async with run_gateway(GatewaySettings(port=0, redis_url=url)) as running:
        key = "a" * 32
        reply = await get(http, f"{running.base_url}/res.php", key=key, action="get", id="100000001")
        assert reply == "ERROR_INTERNAL_SERVER_ERROR"
        async with http.post(f"{running.base_url}/getBalance", json={"clientKey": key}) as resp:
            assert (await resp.json())["errorCode"] == "ERROR_INTERNAL_SERVER_ERROR"
        async with http.get(f"{running.base_url}/readyz") as resp:
            assert resp.status == 503
    assert key not in caplog.text  # the client key is never logged


async def test_a_request_aiohttp_cannot_parse_is_logged_without_its_key(
    redis_client: aioredis.Redis, redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = await new_key(redis_client, namespace)
    async with serve(redis_client, redis_url, max_body_bytes=4096) as running:
        line = f"GET /in.php?key={key}&method=base64&body={'A' * 5000} HTTP/1.1\r\nHost: x\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.write(line.encode())
        status = await reader.readline()
        writer.close()
        await writer.wait_closed()
    assert b" 400 " in status  # over the request-line limit: aiohttp refuses it
    assert "key=***" in caplog.text  # ... and logs the line it refused
    assert key not in caplog.text

"""Pingbacks through the gateway: in.php ``pingback`` and the JSON API's ``callbackUrl`` become the queue's
webhooks, delivered by the gateway process (a WebhookDeliverer per namespace it serves) to a loopback
receiver, in the format each protocol's clients expect, signed with the gateway's secret, under the id
the client holds."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import subprocess
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from captcha_queue import AsyncCaptchaQueue, Solution
from captcha_queue.gateway import GatewaySettings, RunningGateway
from captcha_queue.gateway._state import GATEWAY_KEY
from captcha_queue.simulator import LatencyModel, RunningSimulator, SimulatorConfig, run_simulator
from captcha_queue.webhooks import sign

from .gateway_helpers import new_key, serve
from .helpers import ProcessManager, claim_all
from .node_client import NodeClients, node_clients
from .test_worker_processes import start_worker, worker_env
from .webhooks_helpers import Receiver

#: The first test of a session may run ``npm ci``.
pytestmark = pytest.mark.timeout(120)

SECRET = "gateway-webhook-secret-0123456789"
RC = {"pageurl": "https://example.com/login", "googlekey": "6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-"}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = await Receiver().start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def open_gateway(
    client: aioredis.Redis, redis_url: str, **changes: object
) -> contextlib.AbstractAsyncContextManager[RunningGateway]:
    """A gateway that may deliver to loopback (the receiver), signing with SECRET."""
    settings: dict[str, object] = {"allow_private_targets": True, "webhook_secret": SECRET, **changes}
    return serve(client, redis_url, **settings)


def verified(request_payload: bytes, headers: dict[str, str]) -> bool:
    timestamp = headers["X-Captcha-Queue-Timestamp"]
    return headers["X-Captcha-Queue-Signature"] == sign(SECRET, timestamp, request_payload)


async def finish_one(queue: AsyncCaptchaQueue, answer: str) -> str:
    [claim] = await claim_all(queue, 1)
    await queue.complete(claim, Solution(text=answer))
    return claim.task.id


# -- the official Node client, end to end ---------------------------------------------------------------


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    config = SimulatorConfig(time_scale=0.1, threads=50, seed=3, latency={"*": LatencyModel.parse("3:2:5")})
    async with run_simulator(config) as sim:
        yield sim


@pytest.fixture
def worker(
    simulator: RunningSimulator, subprocess_env: dict[str, str], processes: ProcessManager
) -> subprocess.Popen[bytes]:
    return start_worker(processes, worker_env(subprocess_env, simulator), "--solver-limit", "20")


async def test_the_node_client_gets_its_pingback_through_the_gateway(
    redis_client: aioredis.Redis,
    redis_url: str,
    namespace: str,
    receiver: Receiver,
    worker: subprocess.Popen[bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    node: NodeClients = node_clients()
    caplog.set_level(logging.DEBUG)
    key = await new_key(redis_client, namespace)
    async with open_gateway(redis_client, redis_url) as gateway:
        params = {**RC, "pingback": receiver.url("/captcha/pingback?source=node")}
        solved = await node.arun(gateway.base_url, key, "solve", "recaptcha", json.dumps(params))
        assert solved.ok, solved
        [hook] = await receiver.wait_for(1)
    # 2captcha's pingback: a POST form with the id the client holds and the answer it polled.
    assert (hook.method, hook.path) == ("POST", "/captcha/pingback")
    assert hook.raw_query == "source=node"
    assert hook.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert hook.fields == {
        "id": solved.document["id"],
        "code": solved.document["answer"],
        "status": "success",
    }
    assert hook.headers["X-Captcha-Queue-Task"] == solved.document["id"]
    assert verified(hook.payload, hook.headers)
    assert SECRET not in caplog.text


# -- formats, settings, refusals --------------------------------------------------------------------


async def test_a_get_pingback_for_captchaai_clients(
    redis_client: aioredis.Redis,
    redis_url: str,
    namespace: str,
    receiver: Receiver,
    queue: AsyncCaptchaQueue,
    http: aiohttp.ClientSession,
) -> None:
    key = await new_key(redis_client, namespace)
    async with open_gateway(redis_client, redis_url, pingback_format="get") as gateway:
        query = {"key": key, "method": "userrecaptcha", "pingback": receiver.url("/cb"), **RC}
        async with http.get(f"{gateway.base_url}/in.php", params=query) as resp:
            body = await resp.text()
        assert body.startswith("OK|")
        task_id = await finish_one(queue, "token-1")
        assert task_id == body[3:]
        [hook] = await receiver.wait_for(1)
    assert (hook.method, hook.path, hook.body) == ("GET", "/cb", b"")
    assert hook.fields == {"id": task_id, "code": "token-1", "status": "success"}
    assert verified(hook.payload, hook.headers)


async def test_a_json_api_callback_url_gets_the_get_task_result_document(
    redis_client: aioredis.Redis,
    redis_url: str,
    namespace: str,
    receiver: Receiver,
    queue: AsyncCaptchaQueue,
    http: aiohttp.ClientSession,
) -> None:
    key = await new_key(redis_client, namespace)
    async with open_gateway(redis_client, redis_url) as gateway:
        task = {
            "type": "RecaptchaV2TaskProxyless",
            "websiteURL": RC["pageurl"],
            "websiteKey": RC["googlekey"],
        }
        document = {"clientKey": key, "task": task, "callbackUrl": receiver.url("/anti")}
        async with http.post(f"{gateway.base_url}/createTask", json=document) as resp:
            created = await resp.json()
        assert created["errorId"] == 0
        await finish_one(queue, "token-2")
        [hook] = await receiver.wait_for(1)
        async with http.post(
            f"{gateway.base_url}/getTaskResult", json={"clientKey": key, "taskId": created["taskId"]}
        ) as resp:
            polled = await resp.json()
    assert (hook.method, hook.path, hook.headers["Content-Type"]) == ("POST", "/anti", "application/json")
    pushed = json.loads(hook.body)
    # Anti-Captcha's callback: what getTaskResult answers, and the taskId the client got from createTask.
    assert pushed == {"taskId": created["taskId"], **polled}
    assert pushed["solution"] == {"gRecaptchaResponse": "token-2", "token": "token-2"}
    assert verified(hook.payload, hook.headers)


async def test_a_private_pingback_is_refused_by_default_and_nothing_is_written(
    redis_client: aioredis.Redis,
    redis_url: str,
    namespace: str,
    receiver: Receiver,
    queue: AsyncCaptchaQueue,
    http: aiohttp.ClientSession,
) -> None:
    key = await new_key(redis_client, namespace)
    async with serve(redis_client, redis_url) as gateway:
        query = {"key": key, "method": "userrecaptcha", "pingback": receiver.url(), "json": "1", **RC}
        async with http.get(f"{gateway.base_url}/in.php", params=query) as resp:
            assert await resp.json() == {"status": 0, "request": "ERROR_BAD_PARAMETERS"}
        task = {
            "type": "RecaptchaV2TaskProxyless",
            "websiteURL": RC["pageurl"],
            "websiteKey": RC["googlekey"],
        }
        document = {"clientKey": key, "task": task, "callbackUrl": "http://169.254.169.254/latest"}
        async with http.post(f"{gateway.base_url}/createTask", json=document) as resp:
            assert (await resp.json())["errorCode"] == "ERROR_BAD_PARAMETERS"
    assert await queue.client.hlen(queue.keys.tasks) == 0
    assert receiver.requests == []


async def test_the_gateway_delivers_for_every_namespace_its_keys_map_to(
    redis_client: aioredis.Redis,
    redis_url: str,
    namespace: str,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await new_key(redis_client, namespace)
    other = f"{namespace}-other"
    other_key = await new_key(redis_client, other)
    try:
        async with serve(redis_client, redis_url) as gateway:
            state = gateway.app[GATEWAY_KEY]
            assert {namespace, other} <= set(state.webhook_namespaces)  # started with the app
        assert state.webhook_namespaces == []  # stopped with it
        unsigned = [r for r in caplog.records if "unsigned" in r.getMessage()]
        assert len(unsigned) == 1  # said once by the gateway, not once per namespace
        async with serve(redis_client, redis_url, webhooks=False) as gateway:
            query = {"key": other_key, "method": "userrecaptcha", "pingback": "https://hooks.example/x", **RC}
            async with http.get(f"{gateway.base_url}/in.php", params=query) as resp:
                assert (await resp.text()).startswith("OK|")  # kept for a deliverer elsewhere
            assert gateway.app[GATEWAY_KEY].webhook_namespaces == []
    finally:
        stale = [k async for k in redis_client.scan_iter(match="{" + other + "}*")]
        if stale:
            await redis_client.delete(*stale)


def test_the_secret_is_never_shown() -> None:
    settings = GatewaySettings(webhook_secret=SECRET)
    assert SECRET not in repr(settings)
    with pytest.raises(ValueError, match="pingback_format"):
        GatewaySettings(pingback_format="json")


async def test_the_gateway_command_signs_with_the_secret_from_its_environment(
    redis_client: aioredis.Redis,
    namespace: str,
    subprocess_env: dict[str, str],
    processes: ProcessManager,
    receiver: Receiver,
    queue: AsyncCaptchaQueue,
    http: aiohttp.ClientSession,
) -> None:
    key = await new_key(redis_client, namespace)
    env = {**subprocess_env, "CAPTCHA_QUEUE_WEBHOOK_SECRET": SECRET}
    argv = [
        "-m",
        "captcha_queue",
        "gateway",
        "--port",
        "0",
        "--allow-private-targets",
        "--pingback-format",
        "get",
    ]
    proc = processes.spawn_python(argv, env)
    assert proc.stdout is not None
    base = proc.stdout.readline().decode().strip()
    assert base.startswith("http://127.0.0.1:"), base
    query = {"key": key, "method": "userrecaptcha", "pingback": receiver.url("/cmd"), **RC}
    async with http.get(f"{base}/in.php", params=query) as resp:
        body = await resp.text()
    assert body.startswith("OK|"), body
    task_id = await finish_one(queue, "token-3")
    [hook] = await receiver.wait_for(1)
    assert hook.fields == {"id": task_id, "code": "token-3", "status": "success"}
    assert verified(hook.payload, hook.headers)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=20)[0].decode()
    assert proc.returncode == 0, output
    assert SECRET not in output
    assert "sent unsigned" not in output

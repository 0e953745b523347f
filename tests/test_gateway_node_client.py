"""Official Node.js clients from npm (tests/node, run by tests/node_client.py) through the gateway to a
real worker subprocess and the simulator: 2captcha's @2captcha/captcha-solver over in.php/res.php and
Anti-Captcha's @antiadmin/anticaptchaofficial over the JSON API, each pointed at the gateway's base URL."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from captcha_queue import AsyncCaptchaQueue
from captcha_queue.gateway import RunningGateway
from captcha_queue.simulator import LatencyModel, RunningSimulator, SimulatorConfig, run_simulator

from .gateway_helpers import new_key, png_b64, serve
from .helpers import ProcessManager, claim_all
from .node_client import NodeClients, node_clients
from .test_worker_processes import eventually, start_worker, worker_env

#: The first test of a session may run ``npm ci``.
pytestmark = pytest.mark.timeout(120)

SITEKEY = "6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-"
RC = {"pageurl": "https://example.com/login", "googlekey": SITEKEY}
TURNSTILE = {"pageurl": "https://example.com/login", "sitekey": "0x4AAAAAAAA-site-key"}


@pytest.fixture
def node() -> NodeClients:
    return node_clients()


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    # Every method solves in 0.2-0.5 s of real time (time scale 0.1 on 2-5 s).
    config = SimulatorConfig(time_scale=0.1, threads=50, seed=3, latency={"*": LatencyModel.parse("3:2:5")})
    async with run_simulator(config) as sim:
        yield sim


@pytest.fixture
def worker(
    simulator: RunningSimulator, subprocess_env: dict[str, str], processes: ProcessManager
) -> subprocess.Popen[bytes]:
    return start_worker(processes, worker_env(subprocess_env, simulator), "--solver-limit", "20")


@pytest.fixture
async def gateway(redis_client: aioredis.Redis, redis_url: str) -> AsyncIterator[RunningGateway]:
    async with serve(redis_client, redis_url, balance=42.5) as running:
        yield running


async def stored_answer(queue: AsyncCaptchaQueue, task_id: str) -> str:
    result = await queue.get_result(task_id)
    assert result is not None
    assert result.ok
    assert result.solution is not None
    return result.solution.text


@pytest.mark.parametrize(("method", "params"), [("recaptcha", RC), ("cloudflareTurnstile", TURNSTILE)])
async def test_the_2captcha_node_client_solves_through_the_gateway(
    node: NodeClients,
    gateway: RunningGateway,
    worker: subprocess.Popen[bytes],
    redis_client: aioredis.Redis,
    namespace: str,
    queue: AsyncCaptchaQueue,
    method: str,
    params: dict[str, str],
) -> None:
    key = await new_key(redis_client, namespace)
    solved = await node.arun(gateway.base_url, key, "solve", method, json.dumps(params))
    assert solved.ok, solved
    task_id = solved.document["id"]
    # The worker's answer (as the simulator gave it) under the id the client holds.
    assert solved.document["answer"] == await stored_answer(queue, task_id)


async def test_the_node_clients_report_through_the_gateway(
    node: NodeClients,
    gateway: RunningGateway,
    worker: subprocess.Popen[bytes],
    simulator: RunningSimulator,
    redis_client: aioredis.Redis,
    namespace: str,
) -> None:
    key = await new_key(redis_client, namespace)
    solved = await node.arun(gateway.base_url, key, "solve", "recaptcha", json.dumps(RC))
    assert solved.ok, solved
    task_id = solved.document["id"]
    good = await node.arun(gateway.base_url, key, "report-good", task_id)
    assert (good.ok, good.document.get("answer")) == (True, "OK_REPORT_RECORDED"), good
    again = await node.arun(gateway.base_url, key, "report-bad", task_id)
    assert again.ok, again  # the client takes ERROR_DUPLICATE_REPORT for a success
    assert again.document["answer"] == "ERROR_DUPLICATE_REPORT"
    args = json.dumps([RC["pageurl"], SITEKEY])
    reported = await node.arun(
        gateway.base_url,
        key,
        "solve",
        "solveRecaptchaV2Proxyless",
        args,
        client="anticaptcha",
        report="correct",
    )
    assert reported.ok, reported
    assert reported.document["report"] is True  # the client answers true for {"errorId": 0, ...}

    async def forwarded() -> bool:  # the worker sends each verdict to the provider that solved the task
        return bool(simulator.stats()["reports"] == {"good": 2})

    await eventually(forwarded, timeout_s=20.0, what="both good reports reach the simulator")


async def test_the_2captcha_node_client_balance_and_errors(
    node: NodeClients, gateway: RunningGateway, redis_client: aioredis.Redis, namespace: str
) -> None:
    key = await new_key(redis_client, namespace)
    balance = await node.arun(gateway.base_url, key, "balance")
    assert (balance.ok, balance.document.get("balance")) == (True, 42.5), balance
    unknown = await node.arun(gateway.base_url, "0" * 32, "solve", "recaptcha", json.dumps(RC))
    assert (unknown.returncode, unknown.error) == (1, "ERROR_KEY_DOES_NOT_EXIST")
    malformed = await node.arun(gateway.base_url, "short", "balance")
    assert (malformed.returncode, malformed.error) == (1, "ERROR_WRONG_USER_KEY")
    # The client checks its params itself: a missing googlekey never leaves the process.
    missing = await node.arun(
        gateway.base_url, key, "solve", "recaptcha", json.dumps({"pageurl": RC["pageurl"]})
    )
    assert (missing.returncode, missing.error) == (1, "CLIENT_ERROR")
    # An empty one does, and the gateway answers the service's code for it.
    empty = await node.arun(gateway.base_url, key, "solve", "recaptcha", json.dumps({**RC, "googlekey": ""}))
    assert (empty.returncode, empty.error) == (1, "ERROR_GOOGLEKEY")
    unknown_id = await node.arun(gateway.base_url, key, "report-bad", "123456789")  # no such task: no report
    assert (unknown_id.returncode, unknown_id.error) == (1, "ERROR_WRONG_CAPTCHA_ID")


async def test_the_anticaptcha_node_client_solves_through_the_json_api(
    node: NodeClients,
    gateway: RunningGateway,
    worker: subprocess.Popen[bytes],
    redis_client: aioredis.Redis,
    namespace: str,
    queue: AsyncCaptchaQueue,
) -> None:
    key = await new_key(redis_client, namespace)
    args = json.dumps([RC["pageurl"], SITEKEY])
    solved = await node.arun(
        gateway.base_url, key, "solve", "solveRecaptchaV2Proxyless", args, client="anticaptcha"
    )
    assert solved.ok, solved
    assert solved.document["answer"] == await stored_answer(queue, solved.document["id"])
    # getbalance answers the balance the live workers read (the configured 42.5 only before any did). The
    # worker publishes its account's with a heartbeat after start: wait for it, or which one the client
    # sees is up to timing (a loaded run saw the worker's 10 where 42.5 was expected).

    async def balance_published() -> bool:
        return bool(await queue.account_balances())

    await eventually(balance_published, what="the worker publishes its account's balance")
    known = await queue.account_balances()
    expected = round(sum(value for value, _ in known.values()), 6)
    assert expected != 42.5  # the worker's (the simulator's), not the gateway's configured fallback
    balance = await node.arun(gateway.base_url, key, "balance", client="anticaptcha")
    assert (balance.ok, balance.document.get("balance")) == (True, expected), balance
    unknown = await node.arun(gateway.base_url, "0" * 32, "balance", client="anticaptcha")
    assert (unknown.returncode, unknown.error) == (1, "ERROR_KEY_DOES_NOT_EXIST")


async def test_the_2captcha_node_clients_json_body_submits_an_image(
    node: NodeClients,
    gateway: RunningGateway,
    worker: subprocess.Popen[bytes],
    redis_client: aioredis.Redis,
    namespace: str,
    queue: AsyncCaptchaQueue,
) -> None:
    """imageCaptcha (like coordinates, grid, text, rotate...) POSTs its params to in.php as a JSON body
    (Content-Type: application/json), not as a form: the gateway reads that body like a form."""
    key = await new_key(redis_client, namespace)
    solved = await node.arun(gateway.base_url, key, "solve", "imageCaptcha", json.dumps({"body": png_b64()}))
    assert solved.ok, solved
    assert solved.document["answer"] == await stored_answer(queue, solved.document["id"])
    result = await queue.get_result(solved.document["id"])
    assert result is not None
    assert result.method == "base64"


async def test_a_json_body_is_read_like_a_form_and_a_bad_one_writes_nothing(
    gateway: RunningGateway, redis_client: aioredis.Redis, namespace: str, queue: AsyncCaptchaQueue
) -> None:
    key = await new_key(redis_client, namespace)
    url = f"{gateway.base_url}/in.php"
    async with aiohttp.ClientSession() as http:

        async def send(body: str) -> str:
            headers = {"Content-Type": "application/json"}
            async with http.post(url, data=body, headers=headers) as resp:
                return await resp.text()

        nan = json.dumps({"key": key, "method": "base64", "body": float("nan")})  # NaN: not JSON, refused
        for bad in ("[1, 2]", "{", nan):
            assert await send(bad) == "ERROR_BAD_PARAMETERS", bad
        assert await queue.client.hlen(queue.keys.tasks) == 0
        document = {"key": key, "json": 1, "soft_id": 4587, "header_acao": 1, "method": "base64"}
        answer = json.loads(
            await send(json.dumps({**document, "body": png_b64(), "numeric": 1, "phrase": True}))
        )
        assert answer["status"] == 1
    [claim] = await claim_all(queue, 1)
    assert claim.task.id == answer["request"]
    assert claim.task.params == {"body": png_b64(), "numeric": "1", "phrase": "1"}

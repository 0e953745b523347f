"""Real clients nobody here wrote, from the package index, through the gateway to real workers: the
official ``captchaai`` SDK 1.0.1 (``base_url``) and ``2captcha-python`` (``server=``, over TLS with a
test CA, since it hard-codes https://). Behind the gateway: a worker subprocess and the simulator."""

from __future__ import annotations

import asyncio
import base64
import gc
import subprocess
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import trustme
from captchaai import CaptchaAI
from captchaai.exceptions import APIError, InvalidKeyError
from twocaptcha import TwoCaptcha
from twocaptcha.api import ApiException

from captcha_queue import AsyncCaptchaQueue
from captcha_queue.gateway import RunningGateway
from captcha_queue.simulator import LatencyModel, RunningSimulator, SimulatorConfig, run_simulator

from .gateway_helpers import new_key, png, png_b64, serve
from .helpers import ProcessManager
from .test_worker_processes import start_worker, worker_env

SITEKEY = "6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-"


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
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_gateway(
    redis_client: aioredis.Redis, redis_url: str, ca: trustme.CA, tmp_path: Path
) -> AsyncIterator[RunningGateway]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued = ca.issue_cert("127.0.0.1")
    issued.private_key_pem.write_to_path(str(key))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    for blob in issued.cert_chain_pems[1:]:
        blob.write_to_path(str(cert), append=True)
    async with serve(redis_client, redis_url, tls_cert=str(cert), tls_key=str(key)) as running:
        yield running


@pytest.mark.timeout(60)
async def test_the_official_captchaai_sdk_solves_through_the_gateway(
    redis_client: aioredis.Redis,
    redis_url: str,
    namespace: str,
    worker: subprocess.Popen[bytes],
    queue: AsyncCaptchaQueue,
) -> None:
    async with serve(redis_client, redis_url) as gateway:
        key = await new_key(redis_client, namespace)

        def solve() -> tuple[str, str, dict[str, int]]:
            solver = CaptchaAI(key, base_url=gateway.base_url)  # threadsinfo at construction
            try:
                result = solver.normal(png())
                return str(result), result.task_id, solver.threads_info()
            finally:
                solver.close()

        text, task_id, threads = await asyncio.to_thread(solve)
        stored = await queue.get_result(task_id)
        assert stored is not None
        assert stored.ok
        assert stored.solution is not None
        assert text == stored.solution.text  # the worker's answer, as the simulator gave it
        assert threads == {"threads": 20, "working_threads": 0}  # the fleet's limit (--solver-limit)

        def bad_key() -> str:
            try:
                CaptchaAI("0" * 32, base_url=gateway.base_url)
            except InvalidKeyError as exc:
                return str(exc)
            return "accepted"

        assert "Key not found" in await asyncio.to_thread(bad_key)
        # The SDK's constructor leaves its HTTP client open when it raises: collect it here, quietly.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()

        def unknown_id() -> None:
            solver = CaptchaAI(key, base_url=gateway.base_url)
            try:
                solver.get_result("normal", "123456")
            finally:
                solver.close()

        with pytest.raises(APIError, match="not found"):
            await asyncio.to_thread(unknown_id)


@pytest.mark.timeout(60)
async def test_2captcha_python_over_tls_solves_through_the_gateway(
    tls_gateway: RunningGateway,
    redis_client: aioredis.Redis,
    namespace: str,
    worker: subprocess.Popen[bytes],
    simulator: RunningSimulator,
    ca: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))  # requests trusts the test CA only
    assert tls_gateway.base_url.startswith("https://")
    key = await new_key(redis_client, namespace)
    server = tls_gateway.base_url.removeprefix("https://")
    image = tmp_path / "captcha.png"
    image.write_bytes(png())

    def solve() -> tuple[dict[str, str], dict[str, str], dict[str, str], float]:
        solver = TwoCaptcha(key, server=server, pollingInterval=1, defaultTimeout=30, recaptchaTimeout=30)
        by_file = solver.normal(str(image))  # multipart upload, method=post
        by_base64 = solver.normal(png_b64())
        token = solver.recaptcha(sitekey=SITEKEY, url="https://example.com/login")
        return by_file, by_base64, token, solver.balance()

    by_file, by_base64, token, balance = await asyncio.to_thread(solve)
    for answer in (by_file, by_base64, token):
        assert answer["captchaId"].isdigit()
        assert answer["code"]
    # The balance the worker read from its account (the simulator's default), not the gateway's fallback.
    assert balance == 10.0
    assert [a["balance"] for a in simulator.stats()["accounts"].values()] == [10.0]

    def errors() -> list[str]:
        found = []
        good, bad = TwoCaptcha(key, server=server), TwoCaptcha("0" * 32, server=server)
        calls: list[tuple[object, str, dict[str, str]]] = [
            (bad, "balance", {}),
            (good, "get_result", {"id_": "77"}),
            (good, "send", {"method": "userrecaptcha", "pageurl": "https://example.com"}),
        ]
        for solver, name, kwargs in calls:
            try:
                getattr(solver, name)(**kwargs)
            except ApiException as exc:
                found.append(str(exc))
        return found

    assert await asyncio.to_thread(errors) == [
        "ERROR_KEY_DOES_NOT_EXIST",
        "ERROR_WRONG_CAPTCHA_ID",
        "ERROR_GOOGLEKEY",
    ]


@pytest.mark.timeout(60)
async def test_reports_through_2captcha_python_and_the_json_api(
    redis_client: aioredis.Redis,
    redis_url: str,
    namespace: str,
    worker: subprocess.Popen[bytes],
    queue: AsyncCaptchaQueue,
) -> None:
    import aiohttp

    async with serve(redis_client, redis_url) as gateway:
        key = await new_key(redis_client, namespace)
        server = gateway.base_url
        async with aiohttp.ClientSession() as http:
            params = {"key": key, "method": "base64", "body": base64.b64encode(png()).decode()}
            async with http.post(f"{server}/in.php", data=params) as resp:
                task_id = (await resp.text())[3:]
            assert (await queue.wait_result(task_id, timeout_s=20)) is not None
            report = {"key": key, "action": "reportbad", "id": task_id}
            async with http.get(f"{server}/res.php", params=report) as resp:
                assert await resp.text() == "OK_REPORT_RECORDED"
            async with http.get(f"{server}/res.php", params=report) as resp:
                assert await resp.text() == "ERROR_DUPLICATE_REPORT"
            body = {"clientKey": key, "taskId": int(task_id)}
            async with http.post(f"{server}/reportCorrectRecaptcha", json=body) as resp:
                assert (await resp.json())["errorCode"] == "ERROR_DUPLICATE_REPORT"
            async with http.post(f"{server}/reportIncorrectRecaptcha", json={**body, "taskId": 1}) as resp:
                assert (await resp.json())["errorId"] == 16

"""Gateways as real processes: kill -9 one gateway and one worker mid-run; no task is lost and every
client gets its answer, the survivors serving the clients of the dead gateway."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from captcha_queue import AsyncCaptchaQueue
from captcha_queue.simulator import LatencyModel, RunningSimulator, SimulatorConfig, run_simulator

from .gateway_helpers import new_key
from .helpers import ProcessManager, free_port
from .test_worker_processes import start_worker, worker_env

CLIENTS = 30
RC = {"googlekey": "6Le-site-key", "pageurl": "https://example.com/login"}


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    # Solves take 1-2 s of real time: the kills land while most tasks are in flight.
    config = SimulatorConfig(
        time_scale=0.1, threads=100, seed=5, latency={"*": LatencyModel.parse("15:10:20")}
    )
    async with run_simulator(config) as sim:
        yield sim


def start_gateway(processes: ProcessManager, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = ["-m", "captcha_queue", "gateway", "--port", str(port), "--key-cache-s", "1"]
    return processes.spawn_python(argv, env, capture=False), f"http://127.0.0.1:{port}"


async def wait_ready(http: aiohttp.ClientSession, base: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with http.get(f"{base}/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, f"gateway {base} not ready"
        await asyncio.sleep(0.05)


FAILOVERS: list[str] = []


async def request(http: aiohttp.ClientSession, bases: list[str], path: str, params: dict[str, str]) -> str:
    """One request as a client behind a load balancer sees it: a gateway that does not answer is
    dropped from the rotation and the request goes to the next one."""
    while True:
        try:
            async with http.get(f"{bases[0]}/{path}", params=params) as resp:
                return await resp.text()
        except aiohttp.ClientError:
            assert len(bases) > 1, "no gateway left"
            FAILOVERS.append(bases.pop(0))


@pytest.mark.timeout(90)
async def test_kill_9_a_gateway_and_a_worker_every_client_gets_its_answer(
    simulator: RunningSimulator,
    subprocess_env: dict[str, str],
    processes: ProcessManager,
    redis_client: aioredis.Redis,
    namespace: str,
    queue: AsyncCaptchaQueue,
) -> None:
    key = await new_key(redis_client, namespace)
    first, first_url = start_gateway(processes, subprocess_env)
    _, second_url = start_gateway(processes, subprocess_env)
    env = worker_env(subprocess_env, simulator)
    doomed_worker = start_worker(processes, env, "--solver-limit", "50")
    start_worker(processes, env, "--solver-limit", "50")
    answers: dict[str, str] = {}
    async with aiohttp.ClientSession() as http:
        await wait_ready(http, first_url)
        await wait_ready(http, second_url)
        submitted = asyncio.Event()
        ids: list[str] = []

        async def client(n: int) -> None:
            bases = [first_url, second_url] if n % 2 == 0 else [second_url, first_url]
            params = {"key": key, "method": "userrecaptcha", **RC, "pageurl": f"https://example.com/{n}"}
            reply = await request(http, bases, "in.php", params)
            assert reply.startswith("OK|"), reply
            task_id = reply[3:]
            ids.append(task_id)
            if len(ids) == CLIENTS:
                submitted.set()
            while True:
                body = await request(http, bases, "res.php", {"key": key, "action": "get", "id": task_id})
                if body != "CAPCHA_NOT_READY":
                    answers[task_id] = body
                    return
                await asyncio.sleep(0.1)

        clients = [asyncio.create_task(client(n)) for n in range(CLIENTS)]
        await asyncio.wait_for(submitted.wait(), 20)
        await asyncio.sleep(0.5)  # mid-run: every task submitted, solves under way
        assert len(answers) < CLIENTS
        processes.kill(first, signal.SIGKILL)
        processes.kill(doomed_worker, signal.SIGKILL)
        await asyncio.wait_for(asyncio.gather(*clients), 60)
    assert sorted(answers) == sorted(ids)
    assert set(FAILOVERS) == {first_url}  # half the clients lost their gateway and went on with the other
    for task_id, body in answers.items():
        result = await queue.get_result(task_id)
        assert result is not None
        assert result.solution is not None
        assert body == f"OK|{result.solution.text}"  # each client got its own task's answer
    assert await queue.client.xlen(queue.keys.events) == CLIENTS  # every task finished exactly once

"""The gateway's client examples in docs/gateway.md (docs/examples/gateway_*.py), run as the page shows
them: a gateway (the second over TLS, with a trustme CA), a worker subprocess and the simulator."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import trustme

from captcha_queue import AsyncCaptchaQueue
from captcha_queue.simulator import LatencyModel, RunningSimulator, SimulatorConfig, run_simulator

from .gateway_helpers import new_key, serve
from .helpers import ProcessManager
from .test_worker_processes import eventually, start_worker, worker_env

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    config = SimulatorConfig(time_scale=0.1, threads=20, seed=1, latency={"*": LatencyModel.parse("3:2:5")})
    async with run_simulator(config) as sim:
        yield sim


async def run_example(name: str, env: dict[str, str]) -> str:
    def run() -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, str(EXAMPLES / name)]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)

    done = await asyncio.to_thread(run)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.timeout(90)
async def test_the_client_examples_solve_through_the_gateway(
    simulator: RunningSimulator,
    subprocess_env: dict[str, str],
    processes: ProcessManager,
    redis_client: aioredis.Redis,
    redis_url: str,
    namespace: str,
    queue: AsyncCaptchaQueue,
    tmp_path: Path,
) -> None:
    start_worker(processes, worker_env(subprocess_env, simulator), "--solver-limit", "10")
    key = await new_key(redis_client, namespace)

    async def limit_set() -> bool:
        return (await queue.stats()).solver_slots_limit == 10

    await eventually(limit_set, what="the worker sets the fleet limit")
    async with serve(redis_client, redis_url) as gateway:
        env = {**subprocess_env, "GATEWAY_URL": gateway.base_url, "GATEWAY_KEY": key}
        out = await run_example("gateway_captchaai.py", env)
    assert out.startswith("threads {'threads': 10, 'working_threads': ")
    assert "\nsolved 1" in out  # a numeric task id and the worker's answer
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, private, bundle = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(private))
    ca.cert_pem.write_to_path(str(bundle))
    async with serve(redis_client, redis_url, tls_cert=str(cert), tls_key=str(private)) as gateway:
        server = gateway.base_url.removeprefix("https://")
        env = {
            **subprocess_env,
            "GATEWAY_SERVER": server,
            "GATEWAY_KEY": key,
            "REQUESTS_CA_BUNDLE": str(bundle),
        }
        out = await run_example("gateway_2captcha.py", env)
    assert out.startswith("solved 1")
    assert out.endswith("balance 10.0\n")  # what the worker read from its account (the simulator's)

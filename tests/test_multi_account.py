"""Several accounts in one worker process: routing by priority and method, failover when an account
pauses (zero balance, wrong key) with no task failed and no retry storm, the fleet limit per account.
A real ``captcha-queue worker --accounts all`` subprocess, the simulator, real Redis."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from captcha_queue.cli import cli
from captcha_queue.models import AccountSpec
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.simulator import RunningSimulator, SimulatorConfig, run_simulator
from captcha_queue.solvers.base import account_ref, key_fingerprint

from .helpers import CliEnv, ProcessManager, free_port
from .test_worker_processes import eventually

GOOD = "a1" * 16
BROKE = "b2" * 16
WRONG = "c3" * 16  # not a key the simulator knows
SCALE = 0.05
TASKS = 30
GOOD_LIMIT = 4
TOKENS = ("turnstile", "userrecaptcha")


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    config = SimulatorConfig(
        keys=(GOOD, BROKE),
        names={GOOD: "good", BROKE: "broke"},
        time_scale=SCALE,
        threads=50,
        over_capacity="zero_balance",
        ip_ban_after=100_000,  # every account calls from 127.0.0.1: the wrong key must not ban the rest
        seed=11,
    )
    async with run_simulator(config) as sim:
        # One thread, then ERROR_ZERO_BALANCE for every submit beyond it (CaptchaAI's "no free thread";
        # 2captcha's "no funds"): busy that does not clear, so the account is paused.
        sim.control({"accounts": {"broke": {"threads": 1, "balance": 0}}})
        yield sim


def turnstile(i: int) -> dict[str, object]:
    return {"method": "turnstile", "params": {"sitekey": "0x4AAAA", "pageurl": f"https://e.test/{i}"}}


async def everything_in(q: AsyncCaptchaQueue) -> str:
    """Every key and value of the namespace, as text."""
    parts: list[str] = []
    async for raw_key in q.client.scan_iter(match="{" + q.namespace + "}*"):
        key = raw_key.decode()
        kind_raw = await q.client.type(key)
        kind = kind_raw.decode() if isinstance(kind_raw, bytes) else str(kind_raw)
        if kind == "string":
            value: object = await q.client.get(key)
        elif kind == "hash":
            value = await q.client.hgetall(key)
        elif kind == "list":
            value = await q.client.lrange(key, 0, -1)
        elif kind == "set":
            value = await q.client.smembers(key)
        elif kind == "zset":
            value = await q.client.zrange(key, 0, -1, withscores=True)
        else:
            value = await q.client.xrange(key)
        parts.append(f"{key} {value!r}")
    return "\n".join(parts)


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_failover_to_the_account_that_works(
    redis_url: str,
    namespace: str,
    subprocess_env: dict[str, str],
    cli_env: CliEnv,
    processes: ProcessManager,
    simulator: RunningSimulator,
) -> None:
    url = simulator.base_url
    async with AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as q:
        # Routing order: broke first (priority 10), then wrong (5), then good: each task tries the
        # paused ones only until they pause.
        await q.add_account(
            AccountSpec(name="broke", base_url=url, limit=5, priority=10, key_env="BROKE_KEY", methods=TOKENS)
        )
        await q.add_account(
            AccountSpec(name="wrong", base_url=url, limit=5, priority=5, key_env="WRONG_KEY", methods=TOKENS)
        )
        await q.add_account(
            AccountSpec(name="good", base_url=url, limit=GOOD_LIMIT, key_env="GOOD_KEY", methods=TOKENS)
        )
        # Images go to an account this worker does not serve (not in its --accounts).
        await q.add_account(
            AccountSpec(
                name="images", base_url=url, limit=2, priority=20, key_env="GOOD_KEY", methods=("base64",)
            )
        )
        ids = await q.submit_many([turnstile(i) for i in range(TASKS)])
        port = free_port()
        env = {**subprocess_env, "GOOD_KEY": GOOD, "BROKE_KEY": BROKE, "WRONG_KEY": WRONG}
        argv = [
            *("-m", "captcha_queue", "worker", "--accounts", "broke,wrong,good", "--processes", "1"),
            *("--concurrency", "20", "--lease-s", "2", "--time-scale", str(SCALE), "--grace-s", "2"),
            *("--busy-pause-after", "3", "--busy-pause-s", "600", "--metrics-port", str(port)),
            *("--log-level", "warning"),
        ]
        processes.spawn_python(argv, env, capture=False)
        results = [r async for r in q.as_completed(ids, timeout_s=50.0)]

        assert len(results) == TASKS
        assert all(r.ok for r in results), [r.error_code for r in results if not r.ok]
        good_ref = account_ref("good", key_fingerprint(GOOD))
        broke_ref = account_ref("broke", key_fingerprint(BROKE))
        solved_by = [r.account for r in results]
        assert set(solved_by) <= {good_ref, broke_ref}
        assert solved_by.count(broke_ref) <= 1  # its one thread, before it paused
        assert all(r.attempts == 1 for r in results)  # a release on a pause consumes no attempt
        stats = await q.stats("good")
        assert (stats.failed, stats.dead) == (0, 0)

        # The two broken accounts are paused (fleet-wide, by ref) for what the service said.
        state = await q.pause_state()
        pauses = {p.account: p.code for p in state.accounts}
        assert pauses.get("wrong") == "ERROR_KEY_DOES_NOT_EXIST"
        assert pauses.get("broke") == "ERROR_ZERO_BALANCE"
        assert "good" not in pauses

        # The fleet limit held on the account that did the work; no retry storm on the others.
        assert 1 <= simulator.account(GOOD)["max_in_flight"] <= GOOD_LIMIT
        codes = simulator.stats()["codes"]
        assert codes.get("ERROR_ZERO_BALANCE", 0) <= 12, codes
        assert codes.get("ERROR_KEY_DOES_NOT_EXIST", 0) <= 12, codes

        async def metrics_agree() -> bool:
            got = await asyncio.to_thread(scrape, port)

            def sample(name: str, **labels: str) -> float | None:
                return got.get((name, tuple(sorted(labels.items()))))

            finished = {
                name: sample("captcha_queue_account_tasks_finished_total", account=name, status="success")
                for name in ("good", "broke", "wrong")
            }
            return (
                finished
                == {
                    "good": solved_by.count(good_ref),
                    "broke": solved_by.count(broke_ref),
                    "wrong": 0,
                }
                and sample("captcha_queue_account_paused_state", account="broke") == 1.0
            )

        await eventually(metrics_agree, timeout_s=10.0, what="per-account series")

        # Ready while one account can work: "good" is not paused (the two others are).
        ready = await asyncio.to_thread(readyz, port)
        assert ready[0] == 200, ready
        assert f"account {good_ref} not paused" in ready[1]

        # A task only a paused or absent account could take: base64 is "images" only, not served here.
        (image_id,) = await q.submit_many([{"method": "base64", "params": {"body": "aGVsbG8=" * 40}}])
        image = await q.wait_result(image_id, timeout_s=20.0)
        assert image is not None
        assert image.status == "error"
        assert image.error_code == "NO_ACCOUNT_FOR_METHOD"

        # No API key anywhere in Redis: the registry holds references, pauses and results fingerprints.
        stored = await everything_in(q)
        for key in (GOOD, BROKE, WRONG):
            assert key not in stored

    shown = await asyncio.to_thread(CliRunner().invoke, cli, ["stats"], env=cli_env)
    assert shown.exit_code == 0, shown.output
    for line in ("good", "broke", "wrong"):
        assert line in shown.output
    assert "ERROR_ZERO_BALANCE" in shown.output
    assert GOOD not in shown.output


async def test_routing_prefers_priority_then_cost_and_follows_a_pause(
    redis_url: str, namespace: str, simulator: RunningSimulator
) -> None:
    """In process: tasks go to the first account in routing order while it has room; an operator's
    pause of it sends the next ones to the other account; a task of a method only one serves goes there."""
    from captcha_queue.worker import MultiWorker, Worker, WorkerConfig
    from captcha_queue.worker.accounts import solver_for_account

    url = simulator.base_url
    config = WorkerConfig(concurrency=4, lease_s=2.0, claim_block_s=0.2, time_scale=SCALE, solver_limit=2)
    specs = [
        AccountSpec(name="cheap", base_url=url, limit=2, cost=0.5, key_env="K"),
        AccountSpec(name="dear", base_url=url, limit=2, cost=2.0, key_env="K"),
        AccountSpec(name="tokens", base_url=url, limit=2, priority=-1, key_env="K", methods=("turnstile",)),
    ]
    async with AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as q:
        solvers = [solver_for_account(spec, GOOD, time_scale=SCALE) for spec in specs]
        workers = [(spec, Worker(q, solver, config)) for spec, solver in zip(specs, solvers, strict=True)]
        multi = MultiWorker(q, workers, config)
        running = asyncio.create_task(multi.run())
        try:

            async def solve_one(i: int, method: str = "turnstile") -> str | None:
                params = {"sitekey": "0x4AAAA", "pageurl": f"https://e.test/{i}"}
                if method == "userrecaptcha":
                    params = {"googlekey": "6Le-key", "pageurl": f"https://e.test/{i}"}
                task_id = await q.submit(method, params)
                result = await q.wait_result(task_id, timeout_s=20.0)
                assert result is not None
                assert result.ok
                return result.account

            refs = {spec.name: account_ref(spec.name, key_fingerprint(GOOD)) for spec in specs}
            assert [await solve_one(i) for i in range(3)] == [refs["cheap"]] * 3
            await q.pause("maintenance", account=refs["cheap"])
            await eventually(lambda: _paused(workers[0][1]), timeout_s=5.0, what="the worker sees the pause")
            assert [await solve_one(i) for i in range(3, 5)] == [refs["dear"]] * 2
            await q.pause("maintenance", account=refs["dear"])
            await eventually(lambda: _paused(workers[1][1]), timeout_s=5.0, what="the worker sees the pause")
            assert await solve_one(5) == refs["tokens"]  # the last one left serves turnstile only
            recaptcha = asyncio.create_task(solve_one(6, "userrecaptcha"))
            await asyncio.sleep(1.0)
            assert not recaptcha.done()  # waits for an account that serves it: none open now
            await q.resume(refs["dear"])
            assert await recaptcha == refs["dear"]
        finally:
            multi.stop()
            await running
            for solver in solvers:
                await solver.aclose()
    assert multi.routed["cheap"] == 3
    assert multi.routed["tokens"] >= 1


async def _paused(worker: object) -> bool:
    return bool(getattr(worker, "paused", False))

"""Worker processes under faults: real ``captcha-queue worker`` subprocesses, the simulator, real Redis.

The simulator runs inside the test's event loop (a real HTTP server on 127.0.0.1); each worker is a
subprocess started and stopped by pid. Everything is time-scaled so a scenario takes seconds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from captcha_queue.errors import RedisUnavailable
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.simulator import RunningSimulator, SimulatorConfig, run_simulator
from captcha_queue.store.server import EmbeddedRedis, Persistence

from .helpers import ProcessManager

KEY = "0123456789abcdef0123456789abcdef"
PAGE = "https://example.test/task/"
SCALE = 0.1  # turnstile: first poll 1 s, then every 0.5 s; solves take 0.8-1.5 s
LEASE_S = 2.0


def turnstile(n: int) -> dict[str, str | int | float]:
    return {"sitekey": "0x4AAAAAAAC3DHQFLr1GavRN", "pageurl": f"{PAGE}{n}"}


def specs(count: int, start: int = 0) -> list[dict[str, object]]:
    return [{"method": "turnstile", "params": turnstile(i)} for i in range(start, start + count)]


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    async with run_simulator(SimulatorConfig(time_scale=SCALE, threads=50, seed=7)) as sim:
        yield sim


def worker_env(env: dict[str, str], sim: RunningSimulator) -> dict[str, str]:
    return {**env, "CAPTCHAAI_KEY": KEY, "CAPTCHAAI_URL": sim.base_url}


def start_worker(
    processes: ProcessManager, env: dict[str, str], *extra: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    argv = [
        "-m",
        "captcha_queue",
        "worker",
        "--processes",
        "1",
        "--concurrency",
        "50",
        "--lease-s",
        str(LEASE_S),
        "--time-scale",
        str(SCALE),
        "--grace-s",
        "5",
        "--log-format",
        "json",
        "--log-level",
        os.environ.get("CQ_TEST_WORKER_LOG_LEVEL", "info"),
        *extra,
    ]
    if log is None:
        return processes.spawn_python(argv, env, capture=False)
    # Logs go to a file: a pipe nobody reads would block a chatty worker.
    with log.open("ab") as sink:
        return processes.spawn_python(argv, env, capture=False, stdout=sink)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"not reached in time: {what}"
        await asyncio.sleep(0.05)


async def remote_ids(queue: AsyncCaptchaQueue, ids: list[str]) -> dict[str, str]:
    """Task id -> the remote id recorded under its lease (read from the task state)."""
    raw = await queue.client.hmget(queue.keys.state, ids)
    found: dict[str, str] = {}
    for task_id, blob in zip(ids, raw, strict=True):
        state = msgspec.json.decode(blob) if blob else {}
        if state.get("remote_id"):
            found[task_id] = str(state["remote_id"])
    return found


async def all_final(queue: AsyncCaptchaQueue, ids: list[str]) -> bool:
    try:
        return all(r is not None for r in [await queue.get_result(i) for i in ids])
    except RedisUnavailable:  # the test's own client, during a Redis restart
        return False


async def wait_exit(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.send_signal(signal.SIGUSR1)  # the worker logs where each of its tasks waits
            await asyncio.sleep(1.0)
            raise AssertionError(f"worker pid {proc.pid} did not exit")
        await asyncio.sleep(0.05)
    return int(proc.returncode)


async def final_results_written(queue: AsyncCaptchaQueue) -> int:
    """Entries of the events stream: one per final result ever written in the namespace."""
    return int(await queue.client.xlen(queue.keys.events))


def account_max_in_flight(sim: RunningSimulator) -> int:
    return int(sim.account(KEY).get("max_in_flight", 0))


@pytest.mark.timeout(90)
async def test_kill_9_mid_solve_resumes_the_remote_ids(
    queue: AsyncCaptchaQueue,
    simulator: RunningSimulator,
    subprocess_env: dict[str, str],
    processes: ProcessManager,
) -> None:
    env = worker_env(subprocess_env, simulator)
    ids = await queue.submit_many(specs(12))
    victim = start_worker(processes, env, "--solver-limit", "20")
    # Every task submitted and its remote id recorded: the kill comes mid-solve, after the record.
    await eventually(lambda: _has(remote_ids(queue, ids), 12), what="remote ids recorded")
    assert not await all_final(queue, ids)
    processes.kill(victim, signal.SIGKILL)
    assert await wait_exit(victim) == -signal.SIGKILL
    start_worker(processes, env, "--solver-limit", "20")
    await eventually(lambda: all_final(queue, ids), what="every task final")
    results = [await queue.get_result(i) for i in ids]
    assert {r.status for r in results if r is not None} == {"success"}
    assert await final_results_written(queue) == 12  # exactly once
    stats = simulator.stats()
    assert stats["submits"] == 12, "a reclaimed task was submitted again instead of resumed"
    assert stats["duplicate_submits"] == {}
    assert account_max_in_flight(simulator) <= 20


@pytest.mark.timeout(90)
async def test_a_stopped_worker_past_its_lease_cannot_write_a_second_result(
    queue: AsyncCaptchaQueue,
    simulator: RunningSimulator,
    subprocess_env: dict[str, str],
    processes: ProcessManager,
    tmp_path: Path,
) -> None:
    env = worker_env(subprocess_env, simulator)
    ids = await queue.submit_many(specs(8))
    zombie = start_worker(processes, env, "--solver-limit", "20", log=tmp_path / "zombie.log")
    await eventually(lambda: _has(remote_ids(queue, ids), 8), what="remote ids recorded")
    processes.kill(zombie, signal.SIGSTOP)
    stopped_at = time.monotonic()
    rescuer = start_worker(processes, env, "--solver-limit", "20")
    await eventually(lambda: all_final(queue, ids), what="the rescuer finished every task")
    # The zombie's leases had lapsed: its last renewal came at most a third of a lease before the stop,
    # so the earliest a lease can lapse is two thirds of a lease after it.
    assert time.monotonic() - stopped_at > LEASE_S * 2 / 3
    first = {i: await queue.get_result(i) for i in ids}
    processes.kill(zombie, signal.SIGCONT)
    # The zombie wakes up with answers for tasks it no longer owns: fencing refuses every write.
    await eventually(lambda: _log_has(tmp_path / "zombie.log", " lost"), what="the zombie's refusals")
    for name in ("zombie", "rescuer"):
        proc = zombie if name == "zombie" else rescuer
        processes.kill(proc, signal.SIGTERM)
        assert await wait_exit(proc) == 0, f"the {name} did not exit cleanly"
    assert {i: await queue.get_result(i) for i in ids} == first  # results immutable
    assert await final_results_written(queue) == 8
    assert simulator.stats()["duplicate_submits"] == {}


@pytest.mark.timeout(90)
async def test_the_fleet_limit_holds_across_workers_and_kills(
    queue: AsyncCaptchaQueue,
    simulator: RunningSimulator,
    subprocess_env: dict[str, str],
    processes: ProcessManager,
) -> None:
    env = worker_env(subprocess_env, simulator)
    limit = ["--solver-limit", "3"]
    ids = await queue.submit_many(specs(24))
    first = start_worker(processes, env, *limit)
    start_worker(processes, env, *limit)
    await eventually(lambda: _finished_count(queue, ids, 6), what="some tasks done")
    processes.kill(first, signal.SIGKILL)
    start_worker(processes, env, *limit)
    await eventually(lambda: all_final(queue, ids), timeout_s=60, what="every task final")
    assert 1 <= account_max_in_flight(simulator) <= 3
    assert await final_results_written(queue) == 24


@pytest.mark.timeout(90)
async def test_account_errors_pause_the_account_and_resume_continues(
    queue: AsyncCaptchaQueue,
    simulator: RunningSimulator,
    subprocess_env: dict[str, str],
    processes: ProcessManager,
) -> None:
    env = worker_env(subprocess_env, simulator)
    simulator.control({"threads": 0})  # CaptchaAI: "no threads" is ERROR_KEY_DOES_NOT_EXIST
    ids = await queue.submit_many(specs(10))
    for _ in range(2):
        start_worker(processes, env, "--solver-limit", "5")

    async def paused() -> bool:
        return bool((await queue.pause_state()).accounts)

    await eventually(paused, what="the account paused")
    await asyncio.sleep(0.5)
    stats = await queue.stats()
    assert stats.failed == 0
    assert stats.completed == 0
    assert stats.queued_total + stats.in_flight + stats.delayed == 10
    (pause,) = (await queue.pause_state()).accounts
    assert "ERROR_KEY_DOES_NOT_EXIST" in pause.reason
    simulator.control({"threads": 10})
    resume = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "captcha_queue", "resume", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(resume.communicate(), 30)
    assert resume.returncode == 0, stderr.decode()
    await eventually(lambda: all_final(queue, ids), what="every task final after resume")
    results = [await queue.get_result(i) for i in ids]
    assert all(r is not None and r.ok and r.attempts == 1 for r in results)


@pytest.mark.timeout(60)
async def test_sigterm_releases_unfinished_tasks_and_exits_0(
    queue: AsyncCaptchaQueue, subprocess_env: dict[str, str], processes: ProcessManager
) -> None:
    # Slow solves (reCAPTCHA v2: 20-60 s at a tenth of the time) and a short grace: some must be released.
    async with run_simulator(SimulatorConfig(time_scale=SCALE, threads=50, seed=3)) as sim:
        env = worker_env(subprocess_env, sim)
        v2 = {"googlekey": "6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-"}
        ids = await queue.submit_many(
            [{"method": "userrecaptcha", "params": {**v2, "pageurl": f"{PAGE}{i}"}} for i in range(6)]
        )
        worker = start_worker(processes, env, "--solver-limit", "20", "--grace-s", "0.3")
        await eventually(lambda: _has(remote_ids(queue, ids), 6), what="remote ids recorded")
        processes.kill(worker, signal.SIGTERM)
        assert await wait_exit(worker) == 0
        stats = await queue.stats()
        assert stats.in_flight == 0
        assert stats.queued_total == 6
        assert len(await remote_ids(queue, ids)) == 6  # kept for resume
        assert await queue.workers() == []
        start_worker(processes, env, "--solver-limit", "20")
        await eventually(lambda: all_final(queue, ids), timeout_s=40, what="every task final")
        assert sim.stats()["submits"] == 6  # resumed, not paid for twice


@pytest.mark.timeout(60)
async def test_a_second_signal_exits_at_once(
    queue: AsyncCaptchaQueue, subprocess_env: dict[str, str], processes: ProcessManager, tmp_path: Path
) -> None:
    # Real-time solves (20-60 s): a graceful stop would wait out its whole 60 s grace.
    async with run_simulator(SimulatorConfig(time_scale=1.0, threads=50, seed=5)) as sim:
        env = worker_env(subprocess_env, sim)
        v2 = {"googlekey": "6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-"}
        ids = await queue.submit_many(
            [{"method": "userrecaptcha", "params": {**v2, "pageurl": f"{PAGE}{i}"}} for i in range(3)]
        )
        log = tmp_path / "worker.log"
        worker = start_worker(processes, env, "--solver-limit", "20", "--grace-s", "60", log=log)
        await eventually(lambda: _has(remote_ids(queue, ids), 3), what="remote ids recorded")
        processes.kill(worker, signal.SIGTERM)
        await eventually(lambda: _log_has(log, "stopping"), what="the first signal handled")
        t0 = time.monotonic()
        processes.kill(worker, signal.SIGTERM)
        assert await wait_exit(worker) == 128 + signal.SIGTERM
        assert time.monotonic() - t0 < 5  # not the 60 s grace
        stats = await queue.stats()
        assert stats.in_flight == 3  # nothing was released: the leases bring them back


@pytest.mark.timeout(120)
async def test_redis_restarted_mid_run_workers_reconnect_and_finish(
    simulator: RunningSimulator, subprocess_env: dict[str, str], processes: ProcessManager
) -> None:
    with tempfile.TemporaryDirectory(prefix="cq-aof-") as data:
        server = EmbeddedRedis(persistence=Persistence(appendonly=True, appendfsync="always", directory=data))
        server.start()
        try:
            env = worker_env({**subprocess_env, "REDIS_URL": server.url}, simulator)
            q = AsyncCaptchaQueue.from_url(server.url, namespace=env["CAPTCHA_QUEUE_NAMESPACE"])
            try:
                ids = await q.submit_many(specs(30))
                for _ in range(2):
                    start_worker(processes, env, "--solver-limit", "10")
                await eventually(lambda: _finished_count(q, ids, 5), what="some tasks done")
                server.kill()
                await asyncio.sleep(1.0)  # an outage of a second, while solves are in flight
                server.start()
                await eventually(lambda: all_final(q, ids), timeout_s=60, what="every task final")
                results = [await q.get_result(i) for i in ids]
                assert all(r is not None and r.ok for r in results)
                assert int(await q.client.xlen(q.keys.events)) == 30
            finally:
                await q.aclose()
        finally:
            server.stop()


async def _has(found: Awaitable[dict[str, str]], count: int) -> bool:
    return len(await found) >= count


async def _finished_count(queue: AsyncCaptchaQueue, ids: list[str], count: int) -> bool:
    try:
        done = [await queue.get_result(i) for i in ids]
    except RedisUnavailable:
        return False
    return sum(r is not None for r in done) >= count


async def _log_has(path: Path, text: str) -> bool:
    def read() -> str:
        return path.read_text(errors="replace") if path.exists() else ""

    return text in await asyncio.to_thread(read)

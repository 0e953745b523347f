"""The process supervisor: restarts with backoff, stops everything together; and the real command."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from captcha_queue.processes import alive
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.store.server import EmbeddedRedis
from captcha_queue.worker.retry import Backoff
from captcha_queue.worker.supervisor import Supervisor

from .helpers import ProcessManager, free_port


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"not reached in time: {what}"
        await asyncio.sleep(0.05)


async def test_a_crashing_child_is_restarted_with_backoff_and_all_stop_together(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    crasher = [sys.executable, "-c", f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(3)"]
    steady = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor = Supervisor([crasher, steady], restart_backoff=Backoff(base_s=0.05, cap_s=0.2), grace_s=1.0)
    running = asyncio.create_task(supervisor.run(install_signals=False))

    async def restarted_a_few_times() -> bool:
        return starts.exists() and len(await asyncio.to_thread(starts.read_text)) >= 4

    await eventually(restarted_a_few_times, timeout_s=20, what="crashing child restarted")
    pids = supervisor.pids
    supervisor.request_stop()
    code = await asyncio.wait_for(running, 20)
    # The steady child was stopped by SIGTERM (not a clean exit): the supervisor reports it.
    assert code == 1
    assert not any(alive(pid) for pid in pids)


async def test_a_second_stop_kills_at_once(tmp_path: Path) -> None:
    # A child that ignores SIGTERM would hold a graceful stop for the whole grace period.
    ready = tmp_path / "ready"
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"open({str(ready)!r}, 'w').close(); time.sleep(60)"
    )
    supervisor = Supervisor([[sys.executable, "-c", script]], grace_s=30.0)
    running = asyncio.create_task(supervisor.run(install_signals=False))

    async def handler_installed() -> bool:
        return await asyncio.to_thread(ready.exists)

    await eventually(handler_installed, what="child ignoring SIGTERM")
    supervisor.request_stop()
    await asyncio.sleep(0.2)
    assert not running.done()
    t0 = time.monotonic()
    supervisor.request_stop()
    assert await asyncio.wait_for(running, 10) == 1
    assert time.monotonic() - t0 < 5


@pytest.mark.timeout(90)
async def test_worker_processes_command_restarts_a_killed_child_and_stops_on_sigterm(
    redis_url: str, namespace: str, subprocess_env: dict[str, str], processes: ProcessManager
) -> None:
    argv = [
        "-m",
        "captcha_queue",
        "worker",
        "--processes",
        "2",
        "--solver",
        "instant",
        "--concurrency",
        "20",
        "--lease-s",
        "2",
        "--grace-s",
        "1",
        "--log-level",
        "warning",
    ]
    supervisor = processes.spawn_python(argv, subprocess_env, capture=False)
    async with AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as q:

        async def live_pids() -> set[int]:
            return {w.info["pid"] for w in await q.workers()}

        async def two_live() -> bool:
            return len(await live_pids()) == 2

        await eventually(two_live, what="two workers registered")
        first = await live_pids()
        victim = min(first)
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> bool:
            pids = await live_pids()
            return len(pids) == 2 and victim not in pids

        await eventually(replaced, what="the killed child replaced")
        ids = await q.submit_many(
            [
                {"method": "turnstile", "params": {"sitekey": "k", "pageurl": f"https://a.test/{i}"}}
                for i in range(40)
            ]
        )
        done = [await q.wait_result(i, timeout_s=30) for i in ids]
        assert all(r is not None and r.ok for r in done)
        children = await live_pids()
        supervisor.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while supervisor.poll() is None:
            assert time.monotonic() < deadline, "the supervisor did not stop"
            await asyncio.sleep(0.05)
        assert supervisor.returncode == 0
        assert not any(alive(pid) for pid in children)
        assert await q.workers() == []


@pytest.mark.parametrize("exclusive", ["accounts", "namespaces"])
def test_every_worker_option_reaches_the_child_processes(exclusive: str) -> None:
    """Each setting marked for the children arrives with a value other than its default; the others
    (the process count, the Redis and solver URLs, the API key) do not appear on the command line.
    ``accounts`` and ``namespaces`` exclude each other: each is checked in its own run."""
    from captcha_queue.cli.worker_cmd import _child_args, worker_cmd
    from captcha_queue.options import build, settings_of
    from captcha_queue.worker import WorkerSettings

    changed: dict[str, object] = {
        "concurrency": 7,
        "lease_s": 4.5,
        "solver_limit": 9,
        "resume_window_s": 60.0,
        "grace_s": 2.0,
        "time_scale": 0.5,
        "busy_pause_after": 7,
        "busy_pause_s": 42.5,
        "report_expire_s": 600.0,
        "balance_refresh_s": 30.0,
        "orphan_hold_s": 90.0,
        "solver": "instant",
        "account": "acct",
        "accounts": "main,backup",
        "request_timeout_s": 12.5,
        "startup_timeout_s": 7.5,
        "metrics_port": 9100,
        "metrics_host": "::1",
        "log_format": "json",
        "log_level": "debug",
        "namespace": "ns",
        "namespaces": "a:2,b:1",
    }
    passed = [s for s in settings_of(WorkerSettings) if s.option.child]
    assert {s.name for s in passed} == set(changed)  # a new setting must be added here, and so tested
    other = "namespaces" if exclusive == "accounts" else "accounts"
    del changed[other]
    passed = [s for s in passed if s.name != other]
    fixed = {"processes": 3, "redis_url": "redis://:pw@127.0.0.1:1/0", "api_key": "k" * 32}
    settings = build(WorkerSettings, changed, **fixed)
    args = _child_args(settings, 2)
    params = worker_cmd.make_context("worker", args).params
    assert params["processes"] == 1
    assert params["supervised"] is True
    for s in passed:
        assert s.default != changed[s.name], s.name
        expected = 9102 if s.name == "metrics_port" else changed[s.name]
        assert params[s.name] == expected, s.name
    for s in settings_of(WorkerSettings):
        if not s.option.child and s.option.cli:
            assert s.flag not in args or s.name == "processes", s.name
    assert not any("pw" in arg or "k" * 32 in arg for arg in args)


# -- secrets stay off command lines ---------------------------------------------------------------------


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")


@pytest.mark.timeout(90)
async def test_no_password_key_or_solver_credential_on_any_worker_command_line(
    namespace: str, processes: ProcessManager
) -> None:
    """ps shows every local user each process's command line: the Redis password, the API key and a
    solver URL's credentials must travel in the environment."""
    key = "c4n4ry" + "k" * 26
    with EmbeddedRedis() as server:
        env = dict(os.environ)
        env |= {"REDIS_URL": server.url, "CAPTCHA_QUEUE_NAMESPACE": namespace, "CAPTCHAAI_KEY": key}
        env["CAPTCHAAI_URL"] = "http://solver-user:solver-s3cret@127.0.0.1:9"
        argv = ["-m", "captcha_queue", "worker", "--processes", "2", "--solver", "instant"]
        supervisor = processes.spawn_python(
            [*argv, "--grace-s", "1", "--log-level", "warning"], env, capture=False
        )
        async with AsyncCaptchaQueue.from_url(server.url, namespace=namespace) as q:

            async def two_live() -> bool:
                return len(await q.workers()) == 2

            await eventually(two_live, what="two workers registered")
            children = [w.info["pid"] for w in await q.workers()]
            assert supervisor.pid not in children
            for pid in [supervisor.pid, *children, server.pid]:
                assert pid is not None
                line = _cmdline(pid)
                for secret in (server.password, key, "solver-s3cret"):
                    assert secret not in line, f"pid {pid}: {line}"
            assert all("worker --processes 1" in _cmdline(pid) for pid in children)
            supervisor.send_signal(signal.SIGTERM)
            await eventually(lambda: _done(supervisor), what="the supervisor stopped")
            assert supervisor.returncode == 0


async def _done(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is not None


# -- Redis unreachable at start-up ------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processes_flag", ["1", "2"])
def test_unreachable_redis_at_start_up_is_one_line_and_exit_1_whatever_p(processes_flag: str) -> None:
    url = f"redis://:pw@127.0.0.1:{free_port()}/0"
    env = {**os.environ, "REDIS_URL": url}
    argv = ["-m", "captcha_queue", "worker", "--processes", processes_flag, "--solver", "instant"]
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, *argv, "--startup-timeout-s", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert 2.0 <= elapsed < 20, elapsed  # it kept trying for the start-up timeout, then gave up
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: cannot reach Redis at redis://:***@{url.split('@')[1]} within 2 s")
    assert "pw@" not in result.stderr


@pytest.mark.timeout(60)
def test_a_supervised_child_that_cannot_reach_redis_exits_with_the_give_up_code() -> None:
    from captcha_queue.cli.worker_cmd import EXIT_STARTUP_FAILED

    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    argv = ["-m", "captcha_queue", "worker", "--processes", "1", "--supervised", "--solver", "instant"]
    result = subprocess.run(
        [sys.executable, *argv, "--startup-timeout-s", "0.5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert result.returncode == EXIT_STARTUP_FAILED, result.stderr
    assert result.stderr.startswith("error: cannot reach Redis at ")


async def test_the_supervisor_stops_the_fleet_when_a_child_gives_up(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    gives_up = [sys.executable, "-c", f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(69)"]
    steady = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor = Supervisor(
        [gives_up, steady], restart_backoff=Backoff(base_s=0.01, cap_s=0.01), grace_s=1.0, give_up_code=69
    )
    code = await asyncio.wait_for(supervisor.run(install_signals=False), 20)
    assert code == 1
    assert starts.read_text() == "x"  # not restarted
    assert supervisor.pids == []  # the steady child was stopped too


@pytest.mark.timeout(90)
async def test_workers_wait_for_a_redis_that_comes_up_within_the_start_up_timeout(
    namespace: str, processes: ProcessManager
) -> None:
    server = EmbeddedRedis(port=free_port())
    env = {**os.environ, "REDIS_URL": server.url, "CAPTCHA_QUEUE_NAMESPACE": namespace}
    argv = ["-m", "captcha_queue", "worker", "--processes", "2", "--solver", "instant", "--grace-s", "1"]
    supervisor = processes.spawn_python([*argv, "--startup-timeout-s", "60", "--log-level", "warning"], env)
    await asyncio.sleep(1.5)  # nothing listens yet: the fleet waits instead of failing
    assert supervisor.poll() is None
    with server:
        async with AsyncCaptchaQueue.from_url(server.url, namespace=namespace) as q:

            async def two_live() -> bool:
                return len(await q.workers()) == 2

            await eventually(two_live, what="two workers registered once Redis was up")
            supervisor.send_signal(signal.SIGTERM)
            await eventually(lambda: _done(supervisor), what="the supervisor stopped")
    assert supervisor.returncode == 0

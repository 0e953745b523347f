"""The worker's /healthz and /readyz: a real worker process, a private Redis stopped and restarted."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from captcha_queue.cli import cli
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.store.server import EmbeddedRedis
from captcha_queue.worker.health import Readiness
from captcha_queue.worker.metrics import WorkerMetrics, is_loopback

from .helpers import ProcessManager, free_port


def get(url: str) -> tuple[int, bytes]:
    """Status and body of one GET (an HTTP error status is an answer too)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return int(reply.status), reply.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


async def aget(url: str) -> tuple[int, bytes]:
    return await asyncio.to_thread(get, url)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"not reached in time: {what}"
        await asyncio.sleep(0.1)


def checks_of(body: bytes) -> dict[str, Any]:
    decoded = msgspec.json.decode(body)
    assert isinstance(decoded, dict)
    checks = decoded["checks"]
    assert isinstance(checks, dict)
    return checks


@pytest.fixture
def private_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(120)
async def test_readyz_follows_redis_and_healthz_stays_ok(
    private_redis: EmbeddedRedis, subprocess_env: dict[str, str], processes: ProcessManager
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**subprocess_env, "REDIS_URL": private_redis.url}
    argv = ["-m", "captcha_queue", "worker", "--processes", "1", "--solver", "instant"]
    argv += ["--solver-limit", "5", "--metrics-port", str(port), "--log-format", "json"]
    processes.spawn_python(argv, env, capture=False)

    async def status(path: str, code: int) -> bool:
        try:
            return (await aget(base + path))[0] == code
        except OSError:  # not listening yet
            return False

    await eventually(lambda: status("/readyz", 200), what="ready")
    code, body = await aget(base + "/readyz")
    assert code == 200
    checks = checks_of(body)
    assert set(checks) == {"redis", "scripts", "limit", "account"}
    assert all(c["ok"] for c in checks.values()), checks
    assert await aget(base + "/healthz") == (200, b"ok\n")
    code, page = await aget(base + "/metrics")
    assert code == 200
    assert b"captcha_queue_tasks_started_total" in page

    private_redis.kill()
    await eventually(lambda: status("/readyz", 503), what="unready once Redis is gone")
    code, body = await aget(base + "/readyz")
    checks = checks_of(body)
    assert code == 503
    assert not checks["redis"]["ok"]
    assert private_redis.password not in body.decode()
    assert await aget(base + "/healthz") == (200, b"ok\n")

    private_redis.start()  # the same port and password, an empty data set (scripts lost)
    await eventually(lambda: status("/readyz", 200), what="ready again once Redis is back")
    assert all(c["ok"] for c in checks_of((await aget(base + "/readyz"))[1]).values())
    assert await aget(base + "/healthz") == (200, b"ok\n")
    assert (await aget(base + "/nope"))[0] == 404


@pytest.mark.timeout(30)
async def test_readyz_names_an_unknown_limit_and_a_paused_account(queue: AsyncCaptchaQueue) -> None:
    metrics = WorkerMetrics()
    ready = Readiness(queue, account_ref="acct/abc123", limit_known=lambda: metrics.limit_known)
    with metrics.serve(0, readiness=ready.from_thread) as server:
        url = f"http://127.0.0.1:{server.port}/readyz"
        code, body = await aget(url)
        checks = checks_of(body)
        assert code == 503
        assert not checks["limit"]["ok"]
        assert checks["redis"]["ok"]
        assert checks["account"]["ok"]

        metrics.set_limit_unknown(False)
        assert (await aget(url))[0] == 200

        await queue.pause("zero balance", account="acct/abc123", code="ERROR_ZERO_BALANCE")
        code, body = await aget(url)
        checks = checks_of(body)
        assert code == 503
        assert not checks["account"]["ok"]
        assert "ERROR_ZERO_BALANCE" in checks["account"]["detail"]

        await queue.resume("acct/abc123")
        assert (await aget(url))[0] == 200


@pytest.mark.timeout(30)
async def test_readyz_reloads_scripts_redis_lost(queue: AsyncCaptchaQueue) -> None:
    ready = Readiness(queue, account_ref="acct", limit_known=lambda: True)
    await queue.client.script_flush()
    assert not all(await queue.client.script_exists(*(s.sha for s in queue.scripts.values())))
    checks = await ready.check()
    assert checks["scripts"].ok
    assert all(await queue.client.script_exists(*(s.sha for s in queue.scripts.values())))


@pytest.mark.timeout(30)
async def test_readyz_is_unready_while_the_worker_loop_does_not_answer(queue: AsyncCaptchaQueue) -> None:
    ready = Readiness(queue, account_ref="acct", limit_known=lambda: True, timeout_s=0.2)
    ok, body = ready.from_thread()  # called on the loop itself: the loop cannot run the checks
    assert not ok
    assert list(checks_of(body)) == ["loop"]
    ok, body = await asyncio.to_thread(ready.from_thread)  # the loop is free again
    assert ok, body


def test_only_loopback_hosts_count_as_loopback() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.5", "metrics.example", "::ffff:10.0.0.1"):
        assert not is_loopback(host), host


def test_a_bad_metrics_host_is_one_line_and_exit_2() -> None:
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "CAPTCHA_QUEUE_METRICS_HOST": None}
    result = CliRunner().invoke(
        cli, ["worker", "--solver", "instant", "--metrics-host", "http://h:80"], env=env
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: Invalid value for '--metrics-host': "), lines

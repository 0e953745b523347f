"""Helpers shared by tests: constants, free ports, queues from sync code, processes stopped by pid."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from captcha_queue.models import Claim, ParamValue
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.store.server import die_with_parent

T = TypeVar("T")

#: reCAPTCHA v2 parameters of a well-formed task (the method most tests submit).
RC: dict[str, ParamValue] = {"googlekey": "6Le-site-key", "pageurl": "https://example.com/login"}

#: CliRunner's environment: None unsets a variable.
CliEnv = dict[str, str | None]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class ProcessManager:
    """Starts subprocesses that die with the test run, and stops each one by its pid."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        capture: bool = True,
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if capture else subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        self.procs.append(proc)
        return proc

    def spawn_python(
        self, args: Sequence[str], env: Mapping[str, str] | None = None, *, capture: bool = True
    ) -> subprocess.Popen[bytes]:
        return self.spawn([sys.executable, *args], env, capture=capture)

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        self.procs.clear()

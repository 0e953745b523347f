"""Official Node.js solver clients from npm, driven by tests/node/solve.js as a subprocess.

tests/node/ is a tiny Node project: package.json and package-lock.json pin the clients (exact versions;
the lock has no ``resolved`` URLs, so ``npm ci`` uses whichever registry npm is configured for). The first
test that asks for a client runs ``npm ci`` once for the session; later sessions skip it while
node_modules matches the lock (a stamp holds the lock's hash), so they need no network. Without ``node``
and ``npm`` on PATH the tests skip with that reason; CI machines have both.

The client's API key travels in the child's environment (``CAPTCHA_API_KEY``), never on its command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "solve.js"
LOCK = NODE_DIR / "package-lock.json"
STAMP = NODE_DIR / "node_modules" / ".captcha-queue-lock.sha256"
INSTALL_TIMEOUT_S = 100.0  # under the 120 s timeout of the tests that install (pytestmark)

Client = Literal["2captcha", "anticaptcha"]

_installed: NodeClients | None = None
_skip_reason: str | None = None


@dataclass(frozen=True)
class NodeResult:
    """What one run of solve.js printed (its one JSON line) and how it exited."""

    returncode: int
    document: dict[str, Any]
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.document.get("ok") is True

    @property
    def error(self) -> str | None:
        """The error code the client saw (None on success)."""
        value = self.document.get("error")
        return None if value is None else str(value)


@dataclass(frozen=True)
class NodeClients:
    """Runs solve.js with ``node``; see the script's header for its actions."""

    node: str

    def argv(
        self,
        base_url: str,
        action: str,
        *args: str,
        client: Client = "2captcha",
        poll_ms: int = 100,
        timeout_s: float = 30.0,
        report: str | None = None,
    ) -> list[str]:
        argv = [self.node, str(SCRIPT), "--client", client, "--base-url", base_url]
        argv += ["--poll-ms", str(poll_ms), "--timeout-s", str(timeout_s)]
        if report is not None:
            argv += ["--report", report]
        return [*argv, action, *args]

    def env(self, key: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, **(extra or {}), "CAPTCHA_API_KEY": key}
        env.pop("CAPTCHA_BASE_URL", None)
        # Loopback only: a proxy configured on the machine must not see these requests (axios honours it).
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
        return env

    def run(self, base_url: str, key: str, action: str, *args: str, **options: Any) -> NodeResult:
        """One run, blocking (for synchronous tests with the servers in other processes)."""
        timeout_s = float(options.get("timeout_s", 30.0))
        proc = subprocess.run(
            self.argv(base_url, action, *args, **options),
            env=self.env(key),
            capture_output=True,
            timeout=timeout_s + 10.0,
            check=False,
        )
        return _result(proc.returncode, proc.stdout, proc.stderr)

    async def arun(self, base_url: str, key: str, action: str, *args: str, **options: Any) -> NodeResult:
        """One run without blocking the event loop (the servers may be serving in the test's loop)."""
        timeout_s = float(options.get("timeout_s", 30.0))
        proc = await asyncio.create_subprocess_exec(
            *self.argv(base_url, action, *args, **options),
            env=self.env(key),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout_s + 10.0)
        except TimeoutError:
            proc.kill()
            await proc.communicate()
            raise
        assert proc.returncode is not None
        return _result(proc.returncode, stdout, stderr)


def _result(returncode: int, stdout: bytes, stderr: bytes) -> NodeResult:
    lines = stdout.decode(errors="replace").splitlines()
    text = stderr.decode(errors="replace")
    assert lines, f"solve.js printed nothing (exit {returncode}); stderr:\n{text}"
    document = json.loads(lines[0])
    assert isinstance(document, dict), lines[0]
    return NodeResult(returncode, document, text)


def _lock_digest() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """One installer at a time for this checkout (two pytest runs may start together)."""
    name = hashlib.sha256(str(NODE_DIR).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"captcha-queue-npm-{name}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install() -> NodeClients:
    """``npm ci`` unless node_modules already matches the lock; then the runner. Skips (with the reason)
    when node or npm is missing; fails with npm's output when the install fails."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise _Missing("node and npm are needed for the Node.js client tests (not found on PATH)")
    with _install_lock():
        digest = _lock_digest()
        if not (STAMP.is_file() and STAMP.read_text().strip() == digest):
            env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false"}
            try:
                proc = subprocess.run(
                    [npm, "ci", "--no-audit", "--prefer-offline", "--loglevel=error"],
                    cwd=NODE_DIR,
                    env=env,
                    capture_output=True,
                    timeout=INSTALL_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                why = f"npm ci in {NODE_DIR} took over {INSTALL_TIMEOUT_S:g} s (is the registry reachable?)"
                pytest.fail(why, pytrace=False)
            if proc.returncode != 0:
                output = (proc.stdout + proc.stderr).decode(errors="replace")[-4000:]
                pytest.fail(f"npm ci in {NODE_DIR} failed (exit {proc.returncode}):\n{output}", pytrace=False)
            STAMP.write_text(digest + "\n")
    return NodeClients(node)


class _Missing(Exception):
    pass


def node_clients() -> NodeClients:
    """The session's runner, installed on first use (a fixture calls this; the tests then get it)."""
    global _installed, _skip_reason
    if _skip_reason is not None:
        pytest.skip(_skip_reason)
    if _installed is None:
        try:
            _installed = install()
        except _Missing as exc:
            _skip_reason = str(exc)
            pytest.skip(_skip_reason)
    return _installed

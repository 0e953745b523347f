"""``captcha-queue account`` against the simulator running as a real HTTP server (a subprocess)."""

from __future__ import annotations

import json
import socket

import pytest
from click.testing import CliRunner, Result

from captcha_queue.cli import cli

from .helpers import ProcessManager

KEY = "a1" * 16
OTHER_KEY = "b2" * 16


@pytest.fixture
def simulator_url(processes: ProcessManager) -> str:
    argv = ["-m", "captcha_queue", "simulator", "--port", "0", "--threads", "7", "--balance", "12.5"]
    proc = processes.spawn_python([*argv, "--keys", KEY])
    assert proc.stdout is not None
    url = proc.stdout.readline().decode().strip()  # the simulator prints its base URL once it listens
    assert url.startswith("http://127.0.0.1:"), url
    return url


def account(url: str, key: str | None, *args: str) -> Result:
    env = {"CAPTCHAAI_URL": url, "CAPTCHAAI_KEY": key, "REDIS_URL": None, "CAPTCHA_QUEUE_NAMESPACE": None}
    return CliRunner().invoke(cli, ["account", *args], env=env)


def test_account_reports_threads_and_balance(simulator_url: str) -> None:
    as_json = account(simulator_url, KEY, "--json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == {"threads": 7, "working_threads": 0, "balance": 12.5}

    table = account(simulator_url, KEY)
    assert table.exit_code == 0
    for row in ("threads", "working threads", "free threads", "balance"):
        assert row in table.stdout
    assert "12.5000" in table.stdout
    assert KEY not in table.output


def test_account_errors_are_one_line_without_the_key(simulator_url: str) -> None:
    refused = account(simulator_url, OTHER_KEY)
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: ERROR_KEY_DOES_NOT_EXIST")
    assert len(refused.stderr.strip().splitlines()) == 1
    assert OTHER_KEY not in refused.output

    short = account(simulator_url, "tooshort")
    assert short.exit_code == 1
    assert short.stderr.strip() == "error: the solver API key must be 32 characters (this one has 8)"

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    down = account(closed, KEY)
    assert down.exit_code == 1
    assert down.stderr.startswith("error: ")
    assert len(down.stderr.strip().splitlines()) == 1
    assert KEY not in down.output

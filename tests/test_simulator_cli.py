"""``captcha-queue simulator`` as a real subprocess: URL on the first line, flags, clean stop on signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from .helpers import ProcessManager

KEY = "q" * 32
TOKEN = "test-control-token"


def start(processes: ProcessManager, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "CAPTCHA_QUEUE_SIMULATOR_TOKEN": TOKEN}
    proc = processes.spawn_python(["-m", "captcha_queue", "simulator", "--port", "0", *args], env)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    assert line.startswith("http://127.0.0.1:"), line
    return proc, line


def post(url: str, fields: dict[str, Any]) -> str:
    data = urllib.parse.urlencode(fields).encode()
    with urllib.request.urlopen(url, data=data, timeout=10) as resp:
        return str(resp.read().decode())


def get_json(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
        return json.loads(resp.read())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_prints_its_url_and_stops_on_signals(processes: ProcessManager, sig: int) -> None:
    proc, url = start(processes, "--time-scale", "0.01", "--seed", "3")
    assert get_json(f"{url}/stats")["submits"] == 0
    proc.send_signal(sig)
    assert proc.wait(10) == 0


def test_flags(processes: ProcessManager) -> None:
    proc, url = start(
        processes,
        "--threads", "1",
        "--over-capacity", "no_slot",
        "--keys", KEY,
        "--latency", "*=60",
        "--id-format", "string",
        "--balance", "3.5",
        "--unsolvable-rate", "0",
        "--fault-rate", "0",
        "--fault-kinds", "http_500,reset",
    )  # fmt: skip
    task = {"key": KEY, "method": "turnstile", "sitekey": "s", "pageurl": "https://a.test/", "json": 1}
    assert json.loads(post(f"{url}/in.php", task))["status"] == 1
    assert json.loads(post(f"{url}/in.php", task))["request"] == "ERROR_NO_SLOT_AVAILABLE"
    assert post(f"{url}/in.php", {**task, "key": "z" * 32}).endswith('"ERROR_KEY_DOES_NOT_EXIST"}')
    assert post(f"{url}/res.php", {"key": KEY, "action": "getbalance"}) == "3.500"
    settings = get_json(f"{url}/control", TOKEN)
    assert (settings["threads"], settings["over_capacity"], settings["faults"]) == (1, "no_slot", {})
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_control_needs_the_token_printed_at_start(processes: ProcessManager) -> None:
    proc = processes.spawn_python(["-m", "captcha_queue", "simulator", "--port", "0", "--threads", "4"])
    assert proc.stdout is not None
    url = proc.stdout.readline().decode().strip()
    token = ""
    while not token:
        line = proc.stdout.readline().decode()
        assert line, "the simulator did not print its control token"
        if "Authorization: Bearer " in line:
            token = line.rsplit("Bearer ", 1)[1].strip()
    for method in ("GET", "POST"):
        request = urllib.request.Request(f"{url}/control", data=b'{"threads": 0}', method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        refused.value.close()
    assert get_json(f"{url}/control", token)["threads"] == 4  # the refused change changed nothing
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_fault_flags(processes: ProcessManager) -> None:
    _, url = start(processes, "--fault-rate", "1", "--fault-kinds", "plaintext_error")
    assert post(f"{url}/res.php", {"key": KEY, "action": "getbalance", "json": 1}) == "ERROR_SERVER_ERROR"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keys", "short"], "32 characters"),
        (["--latency", "bogus"], "VARIANT=MEDIAN"),
        (["--fault-kinds", "meteor", "--fault-rate", "0.1"], "unknown fault kind"),
        (["--unsolvable-rate", "2"], "unsolvable_rate"),
        (["--fault-kinds", "meteor"], "unknown fault kind"),
    ],
)
def test_bad_flags_are_one_line_errors(processes: ProcessManager, args: list[str], message: str) -> None:
    proc = processes.spawn_python(["-m", "captcha_queue", "simulator", "--port", "0", *args])
    assert proc.stdout is not None
    assert proc.wait(30) == 1
    output = proc.stdout.read().decode()
    assert message in output
    assert "Traceback" not in output

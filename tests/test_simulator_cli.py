"""``captcha-queue simulator`` as a real subprocess: URL on the first line, flags, clean stop on signals."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.parse
import urllib.request
from typing import Any

import pytest

from .helpers import ProcessManager

KEY = "q" * 32


def start(processes: ProcessManager, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = processes.spawn_python(["-m", "captcha_queue", "simulator", "--port", "0", *args])
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    assert line.startswith("http://127.0.0.1:"), line
    return proc, line


def post(url: str, fields: dict[str, Any]) -> str:
    data = urllib.parse.urlencode(fields).encode()
    with urllib.request.urlopen(url, data=data, timeout=10) as resp:
        return str(resp.read().decode())


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
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
    settings = get_json(f"{url}/control")
    assert (settings["threads"], settings["over_capacity"], settings["faults"]) == (1, "no_slot", {})
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

"""``captcha-queue simulator`` as a real subprocess: URL on the first line, flags, clean stop on signals."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trustme

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
        (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
        (["--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"], "cannot load --tls-cert"),
    ],
)
def test_bad_flags_are_one_line_errors(processes: ProcessManager, args: list[str], message: str) -> None:
    proc = processes.spawn_python(["-m", "captcha_queue", "simulator", "--port", "0", *args])
    assert proc.stdout is not None
    assert proc.wait(30) == 1
    output = proc.stdout.read().decode()
    assert message in output
    assert "Traceback" not in output


def test_an_unknown_profile_is_one_line(processes: ProcessManager) -> None:
    proc = processes.spawn_python(["-m", "captcha_queue", "simulator", "--port", "0", "--profile", "nope"])
    assert proc.stdout is not None
    assert proc.wait(30) == 2
    output = proc.stdout.read().decode()
    assert (
        "'nope' is not one of 'captchaai', '2captcha', 'capsolver', 'anticaptcha', 'generic-inphp'" in output
    )
    assert "Traceback" not in output


def post_json(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_capsolver_profile_serves_the_json_api_only(processes: ProcessManager) -> None:
    capsolver_key = "CAP-" + "a" * 32
    _, url = start(
        processes, "--profile", "capsolver", "--keys", capsolver_key, "--balance", "1", "--price", "0.5"
    )
    status, created = post_json(
        f"{url}/createTask",
        {
            "clientKey": capsolver_key,
            "task": {
                "type": "AntiTurnstileTaskProxyLess",
                "websiteURL": "https://a.test/",
                "websiteKey": "0x4AAAAAAAC3DHQFLr1GavRN",
            },
        },
    )
    assert (status, created["errorId"]) == (200, 0)
    assert post_json(f"{url}/getBalance", {"clientKey": capsolver_key}) == (
        200,
        {"errorId": 0, "balance": 0.5, "packages": []},
    )
    status, refused = post_json(f"{url}/getBalance", {"clientKey": "CAP-" + "b" * 32})
    assert (status, refused["errorCode"]) == (401, "ERROR_KEY_DENIED_ACCESS")
    with pytest.raises(urllib.error.HTTPError) as info:
        post(f"{url}/in.php", {"key": KEY, "method": "turnstile"})
    assert info.value.code == 404
    info.value.close()


def test_tls_flags_serve_https(processes: ProcessManager, tmp_path: Path) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    args = ["-m", "captcha_queue", "simulator", "--port", "0", "--tls-cert", str(cert), "--tls-key", str(key)]
    proc = processes.spawn_python(args, {**os.environ, "CAPTCHA_QUEUE_SIMULATOR_TOKEN": TOKEN})
    assert proc.stdout is not None
    url = proc.stdout.readline().decode().strip()
    assert url.startswith("https://127.0.0.1:"), url
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with urllib.request.urlopen(f"{url}/health", timeout=10, context=context) as resp:
        assert resp.read() == b"ok"
    with pytest.raises(urllib.error.URLError):  # a client that does not trust the CA is refused
        urllib.request.urlopen(f"{url}/health", timeout=10, context=ssl.create_default_context())

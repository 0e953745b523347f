"""The demo, end to end at a small size: real Redis, simulator and worker processes, one killed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import ProcessManager


@pytest.mark.timeout(180)
def test_demo_with_chaos_loses_nothing(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    report_path = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "captcha_queue",
            "demo",
            "--tasks",
            "150",
            "--time-scale",
            "0.01",
            "--processes",
            "2",
            "--concurrency",
            "100",
            "--lease-s",
            "2",
            "--chaos",
            "--quiet",
            "--timeout",
            "120",
            "--report-json",
            str(report_path),
        ],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "lost 0" in proc.stdout
    report = json.loads(report_path.read_text())
    assert report["submitted"] == 150
    assert report["finished"] == 150
    assert report["lost"] == 0
    assert report["worker_kills"] == 1
    assert report["by_status"].get("success", 0) >= 140
    assert set(report["latency"]) <= {"high", "normal", "low"}
    for row in report["latency"].values():
        assert row["end_to_end_s"]["p50"] is not None
    if report["max_solver_in_flight"] is not None and report["solver_limit"]:
        assert report["max_solver_in_flight"] <= report["solver_limit"]


@pytest.mark.timeout(120)
def test_demo_private_redis_has_a_password_that_is_never_printed(
    tmp_path: Path, processes: ProcessManager
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CAPTCHA_QUEUE_NAMESPACE")}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    argv = ["-m", "captcha_queue", "demo", "--tasks", "20", "--time-scale", "0.01", "--processes", "1"]
    # Output to a file, not a pipe: the test reads it while the demo runs and after it exits, never
    # waiting for a pipe's end (a child that outlived the demo would hold that open).
    out_path = tmp_path / "demo.out"
    with out_path.open("wb") as out:
        proc = processes.spawn_python(
            [*argv, "--concurrency", "20", "--quiet", "--timeout", "60"], env, capture=False, stdout=out
        )
    first = _first_line(out_path, proc, deadline_s=60)
    assert first.startswith("Redis: redis://127.0.0.1:"), first
    assert "(a private server; password in " in first
    password_file = Path(first.rsplit("password in ", 1)[1].strip().rstrip(")"))
    assert password_file.parent == tmp_path / "state" / "captcha-queue"
    password = password_file.read_text().strip()
    assert len(password) >= 32
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert proc.wait(90) == 0, out_path.read_text()
    rest = out_path.read_text()
    assert "lost 0" in rest
    assert password not in rest
    assert not password_file.exists()


def _first_line(path: Path, proc: subprocess.Popen[bytes], *, deadline_s: float) -> str:
    """The first complete line the process wrote to ``path`` (it writes it at start)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        text = path.read_text()
        if "\n" in text:
            return text.split("\n", 1)[0] + "\n"
        assert proc.poll() is None, f"the demo exited ({proc.returncode}) before its first line: {text}"
        time.sleep(0.05)
    raise AssertionError(f"no first line within {deadline_s} s")


@pytest.mark.timeout(180)
def test_demo_with_two_accounts_fails_over_and_loses_nothing(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    report_path = tmp_path / "report.json"
    argv = ["demo", "--tasks", "150", "--time-scale", "0.01", "--processes", "1", "--concurrency", "100"]
    argv += ["--lease-s", "2", "--accounts", "2", "--threads", "10", "--quiet", "--timeout", "120"]
    proc = subprocess.run(
        [sys.executable, "-m", "captcha_queue", *argv, "--report-json", str(report_path)],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failovers: 1" in proc.stdout
    report = json.loads(report_path.read_text())
    assert report["lost"] == 0
    assert report["failovers"] == 1
    assert report["by_status"] == {"success": 150}  # no task failed for the revoked key
    # Both worked (demo-2 takes what demo-1 has no room for, then everything after the revoke).
    assert report["by_account"]["demo-1"] >= 1
    assert report["by_account"]["demo-2"] >= 1
    assert sum(report["by_account"].values()) == 150
    assert "1" * 2 + "k" * 30 not in proc.stdout + proc.stderr  # no key shown

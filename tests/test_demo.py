"""The demo, end to end at a small size: real Redis, simulator and worker processes, one killed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


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

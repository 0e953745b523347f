"""The suite under pytest-xdist (``make pytest`` runs it in PYTEST_WORKERS processes): what a worker
sends to the controller must survive the trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SURROGATE_TEST = """
import logging


def test_logs_a_lone_surrogate() -> None:
    logging.getLogger("captcha_queue.probe").warning("queued id %s", "bad\\udcffid")
"""


def test_a_lone_surrogate_in_a_passing_tests_log_does_not_kill_the_worker(tmp_path: Path) -> None:
    """A warning carrying a raw surrogate (a task id decoded with surrogateescape) is captured in the
    report's sections; unescaped, execnet refuses to send it, the worker dies and its tests never run."""
    (tmp_path / "test_probe.py").write_text(SURROGATE_TEST)
    argv = [sys.executable, "-m", "pytest", "-n", "1", "-p", "tests.conftest", "-p", "no:cacheprovider"]
    argv += ["-q", "--rootdir", str(tmp_path), str(tmp_path / "test_probe.py")]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=50, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "1 passed" in output, output
    assert "INTERNALERROR" not in output

"""The package's process manager (demo, tests and bench): real children, stopped by their pid."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from captcha_queue.processes import Processes, alive

#: A child that says "ready" once its SIGTERM handling is in place, then waits to be stopped.
POLITE = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
print("ready", flush=True)
time.sleep(120)
"""
#: A child that ignores SIGTERM.
STUBBORN = POLITE.replace("lambda *_: sys.exit(3)", "signal.SIG_IGN")


@pytest.fixture
def procs() -> Iterator[Processes]:
    with Processes() as manager:
        yield manager


def started(procs: Processes, code: str) -> subprocess.Popen[bytes]:
    proc = procs.spawn([sys.executable, "-c", code], capture=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    return proc


@pytest.mark.timeout(30)
def test_stop_sends_sigterm_and_reaps_the_child(procs: Processes) -> None:
    proc = started(procs, POLITE)
    assert alive(proc.pid)
    assert procs.stop(proc, grace_s=20.0) is True
    assert proc.returncode == 3  # its SIGTERM handler ran
    assert not alive(proc.pid)
    assert proc.stdout is not None
    assert proc.stdout.closed


@pytest.mark.timeout(30)
def test_a_child_that_ignores_sigterm_gets_sigkill_after_the_grace(procs: Processes) -> None:
    proc = started(procs, STUBBORN)
    begun = time.monotonic()
    assert procs.stop(proc, grace_s=0.5) is False
    assert time.monotonic() - begun >= 0.5
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.timeout(30)
def test_a_stopped_child_is_continued_so_it_can_act_on_sigterm(procs: Processes) -> None:
    proc = started(procs, POLITE)
    procs.kill(proc, signal.SIGSTOP)
    assert procs.stop(proc, grace_s=20.0) is True
    assert proc.returncode == 3


@pytest.mark.timeout(30)
def test_stop_all_names_the_children_it_had_to_kill(procs: Processes) -> None:
    polite, stubborn = started(procs, POLITE), started(procs, STUBBORN)
    assert procs.stop_all(grace_s=1.0) == [stubborn.pid]
    assert (polite.returncode, stubborn.returncode) == (3, -signal.SIGKILL)
    assert procs.procs == []


@pytest.mark.timeout(30)
def test_kill_sends_the_signal_asked_for(procs: Processes) -> None:
    proc = started(procs, POLITE)
    procs.kill(proc, signal.SIGUSR1)
    assert proc.wait(20) == -signal.SIGUSR1
    procs.kill(proc)  # it has exited: nothing happens, nothing is raised


@pytest.mark.timeout(30)
def test_output_goes_to_a_pipe_a_file_or_nowhere(procs: Processes, tmp_path: Path) -> None:
    code = "import sys; print('out', flush=True); print('err', file=sys.stderr, flush=True)"
    quiet = procs.spawn([sys.executable, "-c", code])
    assert (quiet.stdout, quiet.wait(20)) == (None, 0)
    log = tmp_path / "child.log"
    with open(log, "wb") as sink:
        procs.spawn([sys.executable, "-c", code], stdout=sink, stderr=subprocess.STDOUT).wait(20)
    assert sorted(log.read_text().split()) == ["err", "out"]
    piped = procs.spawn([sys.executable, "-c", code], capture=True)
    assert piped.communicate(timeout=20)[0] == b"out\n"
    with pytest.raises(ValueError, match="not both"):
        procs.spawn([sys.executable, "-c", code], capture=True, stdout=subprocess.DEVNULL)


@pytest.mark.timeout(30)
def test_a_child_dies_with_its_parent(procs: Processes) -> None:
    """The parent (itself a child here) is killed with SIGKILL: it stops nothing, Linux kills its child."""
    parent_code = textwrap.dedent("""
        import sys, time
        from captcha_queue.processes import Processes
        child = Processes().spawn([sys.executable, "-c", "import time; time.sleep(120)"])
        print(child.pid, flush=True)
        time.sleep(120)
    """)
    parent = procs.spawn([sys.executable, "-c", parent_code], capture=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    assert alive(child_pid)
    procs.kill(parent, signal.SIGKILL)
    parent.wait(20)
    deadline = time.monotonic() + 20
    while alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child_pid)

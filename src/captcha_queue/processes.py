"""Child processes started and stopped by pid: the one manager of the demo, the tests and the bench.

Every child dies with its parent (Linux ``PR_SET_PDEATHSIG``, :func:`die_with_parent`), so a run
that is killed leaves nothing behind. :meth:`Processes.stop` and :meth:`Processes.stop_all` stop
children by their pid, never by name or group: SIGCONT (a stopped child cannot act on SIGTERM), one
SIGTERM (a second one means "exit now" to a worker), then SIGKILL once the grace period is over.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Self

from .store.server import die_with_parent

__all__ = ["Processes", "alive"]

#: Where a child's stdout or stderr goes: a file, ``subprocess.DEVNULL`` or ``subprocess.STDOUT``.
Target = int | IO[bytes]


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, dead but not yet reaped, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class Processes:
    """Children of this process; each dies with it, and each is stopped by its pid."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self._terminated: set[int] = set()

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        capture: bool = False,
        stdout: Target | None = None,
        stderr: Target = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv``. ``capture``: its stdout is a pipe to read (``proc.stdout``); else it goes to
        ``stdout`` (a file), or nowhere. Its stderr goes nowhere unless given (``subprocess.STDOUT``
        sends it wherever stdout goes). Its stdin is empty."""
        if capture and stdout is not None:
            raise ValueError("capture the output or send it to a file, not both")
        proc = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL if stdout is None else stdout,
            stderr=stderr,
            preexec_fn=die_with_parent,
        )
        self.procs.append(proc)
        return proc

    def spawn_python(
        self, args: Sequence[str], env: Mapping[str, str] | None = None, **options: Any
    ) -> subprocess.Popen[bytes]:
        """:meth:`spawn` this Python interpreter with ``args`` (``["-m", "captcha_queue", ...]``)."""
        return self.spawn([sys.executable, *args], env, **options)

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to ``proc`` by its pid (nothing if it has exited)."""
        if sig == signal.SIGTERM:
            self._terminated.add(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None and proc.pid not in self._terminated:
            self.kill(proc, signal.SIGCONT)
            self.kill(proc, signal.SIGTERM)

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> bool:
        """SIGTERM ``proc``, SIGKILL it if it is still running ``grace_s`` later (at once for 0), reap it
        and close its pipes. True if it exited without the SIGKILL."""
        exited = True
        if proc.poll() is None:
            if grace_s > 0:
                self._terminate(proc)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                exited = False
                self.kill(proc, signal.SIGKILL)
                proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._terminated.discard(proc.pid)
        return exited

    def stop_all(self, grace_s: float = 10.0) -> list[int]:
        """Stop every child: SIGTERM to all at once, then SIGKILL to those still running ``grace_s``
        later (at once for 0). Returns the pids that needed the SIGKILL."""
        if grace_s > 0:
            for proc in self.procs:
                self._terminate(proc)
        deadline = time.monotonic() + grace_s
        killed = [p.pid for p in self.procs if not self.stop(p, max(0.0, deadline - time.monotonic()))]
        self.procs.clear()
        self._terminated.clear()
        return killed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

"""Helpers shared by tests: processes started and stopped by pid."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

from captcha_queue.redis_server import die_with_parent


class ProcessManager:
    """Starts subprocesses that die with the test run, and stops each one by its pid."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        capture: bool = True,
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if capture else subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        self.procs.append(proc)
        return proc

    def spawn_python(
        self, args: Sequence[str], env: Mapping[str, str] | None = None, *, capture: bool = True
    ) -> subprocess.Popen[bytes]:
        return self.spawn([sys.executable, *args], env, capture=capture)

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        self.procs.clear()

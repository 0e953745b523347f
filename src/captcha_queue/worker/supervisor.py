"""``captcha-queue worker --processes P``: P worker processes, restarted when they die, stopped together.

Each child is ``python -m captcha_queue worker --processes 1 ...`` with the parent's other flags (its
own metrics port, if any). Children die with the supervisor (Linux ``PR_SET_PDEATHSIG``), so a killed
supervisor leaves nothing behind; their leases return whatever they held.

A child that exits while the fleet is running is restarted after a backoff that grows with quick
successive deaths (exponential with full jitter, reset once a child has lived a minute). SIGTERM or
SIGINT is forwarded to every child, which then shut down gracefully; a child still alive after the
grace period (plus a margin) is killed. A second signal kills every child at once.

A child that drained on an operator's request (``captcha-queue workers drain ID``: it finished its
tasks, unregistered and exited 0) is not restarted: it tells the supervisor so through a pipe of its
own (``DRAIN_FD_ENV`` names its end; ``report_drained``). The others keep running; once every child
has drained, the supervisor exits 0.

A child that exits with ``give_up_code`` (the worker's "could not reach Redis within
--startup-timeout-s") is not restarted: the supervisor stops the others and exits non-zero, as one
process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..store.server import die_with_parent
from .retry import Backoff

__all__ = ["DRAIN_FD_ENV", "Supervisor", "child_argv", "report_drained"]

log = logging.getLogger("captcha_queue.worker.supervisor")

#: A child that lived this long before dying is restarted at once (its death was not a crash loop).
_STABLE_S = 60.0
#: The environment variable naming the file descriptor a supervised child reports its drain on.
DRAIN_FD_ENV = "CAPTCHA_QUEUE_SUPERVISOR_FD"
_DRAINED = b"drained\n"


def report_drained() -> None:
    """In a supervised child that drained on request, just before it exits 0: tell the supervisor
    not to restart it. Outside a supervisor (no ``DRAIN_FD_ENV``) it does nothing."""
    raw = os.environ.get(DRAIN_FD_ENV, "")
    if not raw.isdigit():
        return
    with contextlib.suppress(OSError):
        os.write(int(raw), _DRAINED)
        os.close(int(raw))


def child_argv(args: Sequence[str]) -> list[str]:
    """The command line of one child: this interpreter running the worker command."""
    return [sys.executable, "-m", "captcha_queue", "worker", *args]


@dataclass
class _Child:
    index: int
    argv: list[str]
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    restarts: int = 0
    waiter: asyncio.Task[int] | None = field(default=None, repr=False)
    report_fd: int | None = None  # the supervisor's end of the child's drain pipe
    drained: bool = False  # exited 0 after an operator's drain request: not restarted


class Supervisor:
    """Runs and supervises worker processes; ``run()`` returns the exit code for the command."""

    def __init__(
        self,
        argvs: Sequence[Sequence[str]],
        *,
        env: Mapping[str, str] | None = None,
        grace_s: float = 30.0,
        restart_backoff: Backoff | None = None,
        give_up_code: int | None = None,
    ) -> None:
        self._children = [_Child(i, list(argv)) for i, argv in enumerate(argvs)]
        self._env = dict(env) if env is not None else None
        self._grace_s = grace_s
        self._backoff = restart_backoff or Backoff(base_s=0.5, cap_s=30.0)
        self._stopping = asyncio.Event()
        self._signals = 0
        self._give_up_code = give_up_code
        self._gave_up = False

    @property
    def pids(self) -> list[int]:
        return [c.proc.pid for c in self._children if c.proc is not None and c.proc.returncode is None]

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """First call: graceful stop of every child. Second call: kill them all now."""
        self._signals += 1
        if self._signals == 1:
            log.info("supervisor: stopping %d worker processes", len(self._children))
            self._stopping.set()
            self._signal_all(signal.SIGTERM)
        else:
            log.warning("supervisor: second signal, killing every worker process now")
            self._signal_all(signal.SIGKILL)

    def _signal_all(self, sig: int) -> None:
        for child in self._children:
            if child.proc is not None and child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(sig)

    async def run(self, *, install_signals: bool = True) -> int:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop, sig)
        try:
            for child in self._children:
                await self._spawn(child)
            await self._watch()
            return await self._stop_all()
        finally:
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    async def _spawn(self, child: _Child) -> None:
        self._close_report(child)  # the pipe of the run that died
        read_fd, write_fd = os.pipe()
        env = dict(self._env if self._env is not None else os.environ)
        env[DRAIN_FD_ENV] = str(write_fd)
        try:
            child.proc = await asyncio.create_subprocess_exec(
                *child.argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                preexec_fn=die_with_parent,
                pass_fds=(write_fd,),
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the child holds the only write end: its exit closes the pipe
        os.set_blocking(read_fd, False)
        child.report_fd = read_fd
        child.started_at = time.monotonic()
        child.waiter = asyncio.create_task(child.proc.wait(), name=f"child-{child.index}")
        log.info("supervisor: worker %d started (pid %d)", child.index, child.proc.pid)

    async def _watch(self) -> None:
        stop = asyncio.create_task(self._stopping.wait(), name="supervisor-stop")
        try:
            while not self._stopping.is_set():
                waiters = {c.waiter: c for c in self._children if c.waiter is not None}
                done, _ = await asyncio.wait([stop, *waiters], return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    return
                for finished in done:
                    child = waiters[finished]
                    if self._give_up_code is not None and finished.result() == self._give_up_code:
                        self._give_up(child)
                        return
                    if finished.result() == 0 and self._drained(child):
                        if all(c.drained for c in self._children):
                            log.info("supervisor: every worker process drained; exiting")
                            return
                        continue
                    await self._restart(child, finished.result())
        finally:
            stop.cancel()
            for child in self._children:
                self._close_report(child)

    def _drained(self, child: _Child) -> bool:
        """Whether the child that just exited reported a drain on its pipe (then it stays stopped)."""
        report = b""
        if child.report_fd is not None:
            with contextlib.suppress(OSError):  # BlockingIOError: nothing written
                report = os.read(child.report_fd, 64)
        self._close_report(child)
        if report != _DRAINED:
            return False
        assert child.proc is not None
        child.drained = True
        child.waiter = None
        log.info(
            "supervisor: worker %d (pid %d) drained on request; not restarted (%d still running)",
            child.index,
            child.proc.pid,
            sum(1 for c in self._children if not c.drained),
        )
        return True

    @staticmethod
    def _close_report(child: _Child) -> None:
        if child.report_fd is not None:
            os.close(child.report_fd)
            child.report_fd = None

    def _give_up(self, child: _Child) -> None:
        assert child.proc is not None
        log.error(
            "supervisor: worker %d (pid %d) could not start (code %d); stopping every worker",
            child.index,
            child.proc.pid,
            self._give_up_code,
        )
        self._gave_up = True
        self.request_stop()

    async def _restart(self, child: _Child, code: int) -> None:
        lived_s = time.monotonic() - child.started_at
        child.quick_deaths = 0 if lived_s >= _STABLE_S else child.quick_deaths + 1
        delay = self._backoff.delay_s(child.quick_deaths) if child.quick_deaths else 0.0
        assert child.proc is not None
        log.warning(
            "supervisor: worker %d (pid %d) exited with %s after %.1fs; restarting in %.2fs",
            child.index,
            child.proc.pid,
            _describe(code),
            lived_s,
            delay,
        )
        child.waiter = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stopping.wait()
        if self._stopping.is_set():
            return
        child.restarts += 1
        await self._spawn(child)

    async def _stop_all(self) -> int:
        """Wait for every child to exit (killing stragglers); 0 if all exited cleanly."""
        waiters = [c.waiter for c in self._children if c.waiter is not None]
        if waiters:
            _, pending = await asyncio.wait(waiters, timeout=self._grace_s + 15.0)
            if pending:
                log.warning("supervisor: %d workers did not stop in time; killing them", len(pending))
                self._signal_all(signal.SIGKILL)
                await asyncio.wait(pending, timeout=10.0)
        codes = [c.proc.returncode for c in self._children if c.proc is not None]
        bad = [code for code in codes if code not in (0, None)]
        log.info("supervisor: all workers stopped (exit codes %s)", codes)
        return 0 if not bad and not self._gave_up else 1


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def default_processes() -> int:
    return os.cpu_count() or 1


def install_worker_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    """First SIGTERM/SIGINT: ``stop()`` (graceful). Second: exit at once; leases recover the rest."""
    received: list[int] = []

    def handler(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            stop()
        else:
            log.warning("second signal: exiting now; leases return the tasks still held")
            logging.shutdown()
            os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler, sig)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)


def dump_tasks() -> None:
    """SIGUSR1: log where every asyncio task of this worker is waiting (for a worker that hangs)."""
    import io

    for task in asyncio.all_tasks():
        out = io.StringIO()
        task.print_stack(limit=12, file=out)
        log.warning("task %s:\n%s", task.get_name(), out.getvalue())

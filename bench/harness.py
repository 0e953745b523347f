"""Process management, clocks and measurements shared by every workload.

Every process the bench starts goes through :class:`ProcessGroup` (the package's process manager,
``captcha_queue.processes``): it dies with the bench (Linux ``PR_SET_PDEATHSIG``), and is stopped by
its pid (SIGTERM, then SIGKILL), together with any children it started (found through ``/proc``), also
when a run fails half-way. Runs are bounded in time by
:func:`bounded`. Peak memory comes from ``/proc/<pid>/status`` (``VmHWM``): psutil is not a dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import redis

from captcha_queue.processes import Processes, Target, alive

__all__ = [
    "BenchError",
    "ProcessGroup",
    "RunResult",
    "ScriptCounter",
    "Simulator",
    "bounded",
    "command_counts",
    "cpu_seconds",
    "descendants",
    "machine_info",
    "peak_rss_mb",
    "percentile",
    "run_async",
    "summarize",
]

T = TypeVar("T")

#: The repository root, put on PYTHONPATH of every child so ``python -m bench.<module>`` works anywhere.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Key of the simulator account used by default (any well-formed 32-character key is an account there).
SIMULATOR_KEY = "b" * 32


class BenchError(RuntimeError):
    """A run could not be carried out (a process did not start, a deadline passed)."""


Metric = float | int | str | None


@dataclass
class RunResult:
    """One system on one workload configuration: the figures, and why it has none if it failed."""

    workload: str  # "W1", "W1 submit", "W2", "W2 latency", "W3", "W4"
    system: str  # "captcha-queue", "naive", "arq", "saq"
    config: str  # "1 proc", "2 procs x 1000", ...
    metrics: dict[str, Metric] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def get(self, name: str) -> float | None:
        value = self.metrics.get(name)
        return float(value) if isinstance(value, int | float) else None


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: ours, plus the repository on PYTHONPATH, unbuffered."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


# -- processes ------------------------------------------------------------------------------------


class ProcessGroup(Processes):
    """The package's process manager, plus the children of each child: :meth:`stop_all` also stops by
    pid every process seen below a child (``worker --processes P`` starts its own)."""

    def __init__(self) -> None:
        super().__init__()
        #: Every pid seen under a child while it ran, so grandchildren are stopped even if orphaned.
        self.seen_children: set[int] = set()

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        capture: bool = False,
        stdout: Target | None = None,
        stderr: Target = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        """:meth:`Processes.spawn`, with :func:`child_env` when no environment is given."""
        return super().spawn(
            argv, env if env is not None else child_env(), capture=capture, stdout=stdout, stderr=stderr
        )

    def remember_children(self) -> list[int]:
        """Record (and return) the pids of every live descendant of every child."""
        found: list[int] = []
        for proc in self.procs:
            if proc.poll() is None:
                found += descendants(proc.pid)
        self.seen_children.update(found)
        return found

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> bool:
        """Stop ``proc`` by pid (its children are stopped by it, or by pid once it has exited)."""
        children = descendants(proc.pid) if proc.poll() is None else []
        self.seen_children.update(children)
        exited = super().stop(proc, grace_s)
        _kill_pids(children)
        return exited

    def stop_all(self, grace_s: float = 10.0) -> list[int]:
        self.remember_children()
        killed = super().stop_all(grace_s)
        _kill_pids(sorted(self.seen_children))
        self.seen_children.clear()
        return killed


def _kill_pids(pids: Sequence[int]) -> None:
    """SIGKILL every pid that is still one of our descendants' (stale pids are skipped)."""
    me = os.getpid()
    for pid in pids:
        if alive(pid) and _is_descendant(pid, me):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _is_descendant(pid: int, ancestor: int) -> bool:
    current: int | None = pid
    for _ in range(64):
        if current is None or current <= 1:
            return False
        current = _parent_of(current)
        if current == ancestor:
            return True
    return False


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren...), from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent_of(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def read_line(proc: subprocess.Popen[bytes], timeout_s: float, what: str) -> str:
    """The next line ``proc`` prints on stdout, or BenchError after ``timeout_s`` or at its exit."""
    assert proc.stdout is not None
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout_s)
    if not box or not box[0]:
        raise BenchError(f"{what} printed nothing within {timeout_s:.0f} s (exit code {proc.poll()})")
    return box[0].decode("utf-8", "replace").strip()


def vm_status_kb(pid: int, field_name: str) -> int | None:
    """A ``VmXXX`` line of ``/proc/<pid>/status`` in kB (``VmHWM``: peak resident set)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_mb(pids: Sequence[int]) -> dict[int, float]:
    """Peak RSS (VmHWM) in MB of each live pid."""
    peaks: dict[int, float] = {}
    for pid in pids:
        kb = vm_status_kb(pid, "VmHWM")
        if kb is not None:
            peaks[pid] = kb / 1024.0
    return peaks


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds consumed so far by each live pid, summed (from /proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


@dataclass
class CpuMeter:
    """CPU use of the workers, the simulator and this process over one measured interval."""

    worker_pids: Sequence[int]
    simulator_pid: int | None = None
    redis_pid: int | None = None
    _start: tuple[float, ...] = ()

    def _sample(self) -> tuple[float, ...]:
        own = os.times()
        sim = cpu_seconds([self.simulator_pid]) if self.simulator_pid else 0.0
        server = cpu_seconds([self.redis_pid]) if self.redis_pid else 0.0
        return (time.monotonic(), cpu_seconds(self.worker_pids), sim, own.user + own.system, server)

    def start(self) -> CpuMeter:
        self._start = self._sample()
        return self

    def stop(self) -> dict[str, float | None]:
        end = self._sample()
        wall = max(1e-9, end[0] - self._start[0])

        def pct(i: int) -> float:
            return round(100 * (end[i] - self._start[i]) / wall, 1)

        return {
            "worker_cpu_s": round(end[1] - self._start[1], 3),
            "worker_cpu_pct": pct(1),
            "sim_cpu_pct": pct(2) if self.simulator_pid else None,
            "producer_cpu_pct": pct(3),
            "redis_cpu_pct": pct(4) if self.redis_pid else None,
        }


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed (as the captcha-queue worker does), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def event_loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


async def bounded(awaitable: Awaitable[T], timeout_s: float, what: str) -> T:
    """Await with a deadline: a run that hangs becomes a BenchError, never a hung bench."""
    try:
        return await asyncio.wait_for(awaitable, timeout_s)
    except TimeoutError:
        raise BenchError(f"{what} did not finish within {timeout_s:.0f} s") from None


# -- Redis ----------------------------------------------------------------------------------------


def command_counts(url: str) -> dict[str, int]:
    """``INFO commandstats`` as command -> calls."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    counts: dict[str, int] = {}
    for name, value in stats.items():
        if isinstance(value, dict) and "calls" in value:
            counts[str(name).removeprefix("cmdstat_")] = int(value["calls"])
    return counts


def command_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Calls per command between two snapshots, without the bench's own INFO calls."""
    delta = {name: after[name] - before.get(name, 0) for name in after}
    return {name: n for name, n in delta.items() if n > 0 and name != "info"}


class ScriptCounter:
    """Commands Redis runs, by the script that ran them (MONITOR; for ``bench.micro --by-script``).

    Redis logs an EVALSHA before the commands its script runs, so every ``lua`` line belongs to the
    last script called; the EVALSHA itself counts to its script, any other client command to
    ``"(client) <command>"``. MONITOR slows Redis down: counts only, never with timings."""

    _STOP = "bench-script-counter-stop"

    def __init__(self, url: str) -> None:
        from captcha_queue.store.scripts import load_scripts

        self.url = url
        self.names = {s.sha: name for name, s in load_scripts().items()}
        self.counts: dict[str, int] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="script-counter", daemon=True)

    def __enter__(self) -> ScriptCounter:
        self._thread.start()
        if not self._ready.wait(10):
            raise BenchError("MONITOR did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        client = redis.Redis.from_url(self.url)
        try:
            client.echo(self._STOP)
        finally:
            client.close()
        self._thread.join(30)

    def _run(self) -> None:
        client = redis.Redis.from_url(self.url)
        current = "(client)"
        try:
            with client.monitor() as monitor:  # type: ignore[no-untyped-call]
                self._ready.set()
                while True:
                    line = monitor.next_command()
                    words = str(line["command"]).split(" ", 2)
                    name = words[0].lower()
                    if line["client_type"] != "lua":
                        if name == "echo" and words[1:2] == [self._STOP]:
                            return
                        if name in ("evalsha", "eval"):
                            current = self.names.get(words[1], "(unknown script)")
                        else:
                            current = f"(client) {name}"
                    self.counts[current] = self.counts.get(current, 0) + 1
        finally:
            client.close()

    def per_task(self, done: int) -> dict[str, float]:
        ordered = sorted(self.counts.items(), key=lambda kv: -kv[1])
        return {name: round(n / max(1, done), 2) for name, n in ordered if n / max(1, done) >= 0.01}


def flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


def delete_pattern(url: str, *patterns: str) -> None:
    """Delete the keys a run left behind when the bench shares a Redis it must not flush."""
    client = redis.Redis.from_url(url)
    try:
        for pattern in patterns:
            batch: list[bytes] = []
            for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    client.delete(*batch)
                    batch.clear()
            if batch:
                client.delete(*batch)
    finally:
        client.close()


def redis_version(url: str) -> str:
    client = redis.Redis.from_url(url)
    try:
        info = client.info("server")
    finally:
        client.close()
    name = "valkey" if "valkey_version" in info else "redis"
    return f"{name} {info.get('valkey_version') or info.get('redis_version')}"


# -- the simulator --------------------------------------------------------------------------------


@dataclass
class Simulator:
    """``captcha-queue simulator`` as a subprocess: the one HTTP solver every system talks to."""

    base_url: str
    proc: subprocess.Popen[bytes]
    argv: list[str]

    @classmethod
    def start(cls, group: ProcessGroup, args: Sequence[str], env: Mapping[str, str]) -> Simulator:
        argv = [sys.executable, "-m", "captcha_queue", "simulator", "--port", "0", *args]
        proc = group.spawn(argv, env, capture=True)
        line = read_line(proc, 30.0, "the simulator")
        if not line.startswith("http"):
            raise BenchError(f"the simulator did not start (it printed {line!r})")
        return cls(base_url=line.rstrip("/"), proc=proc, argv=argv)

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base_url}/stats", timeout=10) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data


def sim_counts(stats: Mapping[str, Any]) -> tuple[int, int]:
    """(in.php submits, res.php polls) from the simulator's ``/stats``."""

    def total(key: str) -> int:
        value = stats.get(key)
        if isinstance(value, dict):
            value = value.get("total", sum(v for v in value.values() if isinstance(v, int | float)))
        return int(value) if isinstance(value, int | float) else 0

    return total("submits"), total("polls")


def sim_max_in_flight(stats: Mapping[str, Any], account_key: str | None = None) -> int | None:
    """The most tasks in flight at once on the account of ``account_key`` (all accounts: None)."""
    accounts = stats.get("accounts")
    if account_key is not None and isinstance(accounts, dict):
        from captcha_queue.simulator.accounts import account_label

        info = accounts.get(account_label(account_key))
        value = info.get("max_in_flight") if isinstance(info, dict) else None
        return int(value) if isinstance(value, int | float) else None
    value = stats.get("max_in_flight")
    return int(value) if isinstance(value, int | float) else None


# -- statistics -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) by the nearest-rank method; None for no data."""
    if not values:
        return None
    data = sorted(values)
    rank = max(1, math.ceil(q * len(data)))
    return data[min(len(data), rank) - 1]


def summarize(values: Sequence[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(values, 0.50),
        "p99": percentile(values, 0.99),
        "max": max(values, default=None),
    }


# -- the machine ----------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    kb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kb = int(line.split()[1])
    return round(kb / 1024 / 1024, 1) if kb else None


def package_versions(names: Sequence[str]) -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine_info() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
    }


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` is the elapsed monotonic time in seconds."""
    box: list[float] = []
    start = time.monotonic()
    try:
        yield box
    finally:
        box.append(time.monotonic() - start)

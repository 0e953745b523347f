"""Why a target was missed: re-run the measurement under pyinstrument and summarise where time went.

* Worker-side targets (W1, W2 throughput, RSS): the captcha-queue worker runs as
  ``python -m pyinstrument -r pyisession -o X -m captcha_queue worker --processes 1 ...`` (with one
  process the worker command runs in-process, so the profile is the worker's own).
* Producer-side targets (queue overhead, W3 wake-up): the bench process itself runs the measurement
  under ``pyinstrument.Profiler``.

The summary is the functions with the most self time (excluding the event loop waiting in epoll),
plus the share of wall time the process was busy: a process busy ~100 % of the time is CPU-bound.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .harness import RunResult, run_async
from .report import Target

__all__ = ["explain_misses", "summarize_session"]

#: Frames where an idle event loop sits (their self time is waiting, not work).
#: With uvloop the loop is C code: its waiting shows as self time of the Python frame that started it.
_IDLE_FUNCTIONS = frozenset(
    {
        "select",
        "poll",
        "epoll",
        "_worker",
        "wait",
        "sleep",
        "acquire",
        "run",
        "run_until_complete",
        "run_forever",
    }
)
TOP_N = 12


def summarize_session(session: Any, title: str) -> str:
    """Top self-time functions of a pyinstrument session, and how busy the process was."""
    root = session.root_frame(trim_stem=False)
    if root is None:
        return f"{title}: no samples"
    self_time: dict[str, float] = {}
    idle: float = 0.0

    def walk(frame: Any) -> None:
        nonlocal idle
        own = float(frame.total_self_time) if not frame.is_synthetic else 0.0
        if own > 0:
            name = f"{frame.function} ({_short(frame.file_path)}:{frame.line_no})"
            if frame.function in _IDLE_FUNCTIONS and _is_stdlib(frame.file_path):
                idle += own
            else:
                self_time[name] = self_time.get(name, 0.0) + own
        for child in frame.children:
            walk(child)

    walk(root)
    total = root.time or 1e-9
    busy = max(0.0, total - idle)
    lines = [
        f"{title}: {total:.1f} s sampled, busy {100 * busy / total:.0f} % "
        "(the rest waiting in the event loop)",
        "top functions by self time (share of busy time):",
    ]
    for name, seconds in sorted(self_time.items(), key=lambda kv: -kv[1])[:TOP_N]:
        lines.append(f"  {100 * seconds / (busy or 1e-9):5.1f} %  {name}")
    return "\n".join(lines)


def _short(path: str | None) -> str:
    if not path:
        return "?"
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.rsplit("/", 2)[-1]


def _is_stdlib(path: str | None) -> bool:
    return bool(path) and "site-packages" not in str(path) and "captcha_queue" not in str(path)


@contextlib.contextmanager
def _profiler() -> Iterator[Any]:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.002, async_mode="disabled")
    profiler.start()
    try:
        yield profiler
    finally:
        profiler.stop()


def _worker_profile(bench: Any, rerun: Any, title: str) -> str:
    """Re-run ``rerun`` (a coroutine factory) with the captcha-queue worker under pyinstrument."""
    from pyinstrument.session import Session

    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        path = Path(tmp) / "worker.pyisession"
        bench.profile_worker_to = path
        try:
            result: RunResult = run_async(rerun())
        finally:
            bench.profile_worker_to = None
        if not path.exists():
            return f"{title}: the profiled worker wrote no profile ({result.error or 'no error'})"
        summary = summarize_session(Session.load(path), title)
    shown = ", ".join(f"{k}={v}" for k, v in result.metrics.items() if v is not None)
    return f"{summary}\nprofiled run: {shown}"


def _producer_profile(rerun: Any, title: str) -> str:
    with _profiler() as profiler:
        result: RunResult = run_async(rerun())
    shown = ", ".join(f"{k}={v}" for k, v in result.metrics.items() if v is not None)
    summary = summarize_session(profiler.last_session, title)
    return f"{summary}\nprofiled run (slowed by the sampler in this same process): {shown}"


def _measured_reason(results: Sequence[RunResult], where: str) -> str:
    """What the run itself showed: CPU use of each process group and, for W2, solves kept in flight."""
    row = next(
        (r for r in results if where and f"{r.workload} {r.system} {r.config}".startswith(where)), None
    )
    if row is None:
        return ""
    parts: list[str] = []
    cpu = row.get("worker_cpu_pct")
    if cpu is not None:
        parts.append(
            f"CPU during the run: worker processes {cpu:.0f} % of one core, simulator "
            f"{_pct(row.get('sim_cpu_pct'))}, Redis {_pct(row.get('redis_cpu_pct'))}, producer (bench "
            f"process) {_pct(row.get('producer_cpu_pct'))}; the machine has 2 cores."
        )
    peak, ideal, rate = row.get("max_in_flight"), row.get("ideal_per_s"), row.get("throughput_per_s")
    if peak is not None and ideal and rate is not None:
        latency_s = row.get("latency_s") or 1.0
        capacity = ideal * latency_s
        held = rate * latency_s  # Little's law: the mean number of solves in flight over the run
        parts.append(
            f"On average {held:.0f} solves were in flight (throughput x L) of {capacity:.0f} allowed "
            f"(peak {peak:.0f} at the simulator)."
        )
        if held < 0.9 * capacity and (cpu or 0) < 80:
            parts.append("The worker was waiting, not saturated: it did not keep its solver slots busy.")
            buffer = _prefetch(row.get("concurrency"))
            if buffer is not None:
                parts.append(
                    f"(The worker's prefetch buffer, the claimed tasks allowed to wait for a slot, is "
                    f"max(16, concurrency / 10) = {buffer} per process.)"
                )
    stages = {
        "submit -> claim (the queue hands the task to a worker)": row.get("pickup_p99_ms"),
        "claim -> result written, minus L (the worker: slot, in.php, the poll schedule, res.php, the "
        "finishing script)": row.get("worker_p99_ms"),
        "result written -> producer wakes (notification)": row.get("notify_p99_ms"),
    }
    known = {name: value for name, value in stages.items() if value is not None}
    if known:
        worst = max(known, key=lambda name: known[name] or 0.0)
        parts.append(f"The tail is in the stage {worst}: p99 {known[worst]:.1f} ms.")
    return " ".join(parts)


def _prefetch(concurrency: float | None) -> int | None:
    """The captcha-queue worker's default prefetch buffer for a concurrency."""
    if not concurrency:
        return None
    try:
        from captcha_queue.worker.config import WorkerConfig

        return int(WorkerConfig(concurrency=int(concurrency)).buffer)
    except Exception:
        return None


def _pct(value: float | None) -> str:
    return f"{value:.0f} %" if value is not None else "-"


def explain_misses(bench: Any, targets: Sequence[Target]) -> None:
    """Fill ``reason`` and ``profile`` of each missed target (one profiled re-run per kind)."""
    s = bench.sizes
    for target in targets:
        if target.met is not False:
            continue
        target.reason = _measured_reason(bench.results, target.where)
        try:
            if target.name.startswith("W2 throughput") or target.name.startswith("Peak RSS"):
                target.profile = _worker_profile(
                    bench,
                    lambda: bench.cq_w2(1, s.w2_concurrency, s.w2_limit, s.w2_tasks, workload="profile"),
                    "captcha-queue worker, W2 re-run under pyinstrument",
                )
            elif target.name.startswith("W2 vs the naive"):
                target.profile = "see the W2 throughput profile"
            elif target.name.startswith("W1"):
                target.profile = _worker_profile(
                    bench, lambda: bench.cq_w1(1), "captcha-queue worker, W1 (1 process) under pyinstrument"
                )
            elif target.name.startswith("Queue overhead"):
                target.profile = _worker_profile(
                    bench, bench.cq_latency, "captcha-queue worker, W2 latency re-run under pyinstrument"
                )
            elif target.name.startswith("W3"):
                from .notify import run_w3

                waiters = 1 if target.name.endswith(" 1 waiter") else s.w3_waiters
                target.profile = _producer_profile(
                    lambda n=waiters: run_w3(
                        bench.redis_url, "captcha-queue", n, s.w3_rounds, s.time_scale, 120.0
                    ),
                    f"bench process (the waiters), W3 {waiters} waiter(s) re-run",
                )
        except Exception as exc:
            target.profile = f"profiling failed: {type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):
                bench.clean()

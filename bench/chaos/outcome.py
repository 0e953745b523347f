"""What every scenario shares: the report row, the rig settings, and the concluding check.

``conclude`` gathers the facts of a finished run (final states from Redis, the simulator's counts,
the samples), runs the checker, looks for worker crashes and for the canary key in every log, Redis
key and value and metric, and returns the row with its violations.

The simulator runs with ``--over-capacity queue`` and more threads than the fleet limit N, so it
never refuses work on the fleet's behalf: its in-flight maximum is what the fleet actually did.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .checker import CheckReport, Expect, FinalState, KillRecovery, check
from .harness import Rig, RigConfig
from .secrets import scan_files, scan_metrics, scan_redis

__all__ = [
    "Row",
    "conclude",
    "config_for",
    "events_per_task",
    "fraction_final",
    "pid_of",
    "read_zset",
    "remote_ids_of",
    "secret_scan",
]


@dataclass
class Row:
    """One line of the report table."""

    number: int
    name: str
    size: str
    figure: str
    passed: bool
    violations: list[str] = field(default_factory=list)
    limit: str = ""
    secrets: str = ""
    elapsed_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


def sim_args(limit: int, extra: Sequence[str] = ()) -> list[str]:
    # Plenty of threads and a silent queue: the simulator never limits on the fleet's behalf.
    return ["--threads", str(limit * 4), "--over-capacity", "queue", *extra]


def config_for(limit: int, sim_extra: Sequence[str] = (), **kwargs: Any) -> RigConfig:
    return RigConfig(solver_limit=limit, simulator_args=sim_args(limit, sim_extra), **kwargs)


async def conclude(
    rig: Rig,
    number: int,
    name: str,
    size: str,
    expect: Expect,
    *,
    figure: str = "",
    exclude: Sequence[tuple[float, float]] = (),
    kill_recoveries: Sequence[KillRecovery] = (),
    extra_violations: Sequence[str] = (),
    details: dict[str, Any] | None = None,
    started: float,
) -> tuple[Row, CheckReport]:
    """Check a finished run and build its row (figure text may use the report)."""
    diagnosis = await rig.diagnose() if "timed out" in extra_violations else None
    finals = await rig.finals()
    sim = await rig.sim_stats()
    report = check(
        rig.submitted,
        finals,
        sim.get("submits_by_task", {}),
        solver_limit=rig.config.solver_limit,
        max_solver_in_flight=int(sim.get("max_in_flight", 0)),
        samples=rig.samples,
        exclude=exclude,
        kill_recoveries=kill_recoveries,
        kills=sum(1 for _, event in rig.events if event.startswith(f"signal {int(signal.SIGKILL)} ")),
    )
    violations = report.violations(expect) + list(extra_violations)
    over = (report.max_solver_in_flight or 0) > rig.config.solver_limit
    peak = _peak(rig, sim, finals) if over else None
    crashes = rig.check_crashes()
    if crashes:
        violations.append(f"{len(crashes)} worker crashes: {crashes[0].tail[-300:]!r}")
    secrets_text, secret_found = await secret_scan(rig)
    if secret_found:
        violations.append(f"the API key leaked: {', '.join(secret_found[:5])}")
    row = Row(
        number=number,
        name=name,
        size=size,
        figure=figure,
        passed=not violations,
        violations=violations,
        limit=_limit_text(report),
        secrets=secrets_text,
        elapsed_s=round(time.monotonic() - started, 1),
        details={
            "lost": len(report.lost),
            "final": report.final,
            "tasks": report.tasks,
            "by_status": dict(report.by_status),
            "submits": report.submits,
            "duplicates": report.duplicate_submits,
            "explained": report.explained_duplicates,
            "unexplained": report.unexplained_duplicates,
            "reattempted": report.reattempted,
            "time_to_final_p50_s": rounded(report.time_to_final_p50_s),
            "time_to_final_p99_s": rounded(report.time_to_final_p99_s),
            "time_to_final_max_s": rounded(report.time_to_final_max_s),
            "slot_use": rounded(report.slot_use),
            "worst_slot_recovery_s": rounded(report.worst_slot_recovery_s),
            "worker_crashes": len(crashes),
            "faults": sim.get("faults", {}),
            "events": [f"{t:.1f}s {e}" for t, e in rig.events[:40]],
            **(details or {}),
            **({"diagnosis": diagnosis} if diagnosis else {}),
            **({"peak": peak} if peak else {}),
        },
    )
    return row, report


async def secret_scan(rig: Rig) -> tuple[str, list[str]]:
    """Search every log, Redis key and value, and live /metrics for the run's API key."""
    found: list[str] = []
    log_bytes, hits = scan_files(rig.log_files(), rig.config.api_key)
    found += hits
    assert rig.raw is not None
    with contextlib.suppress(Exception):
        await rig.raw.config_set("rdbcompression", "no")
    keys_searched, hits = await scan_redis(rig.raw, rig.config.api_key)
    found += hits
    if rig.metrics_ports():
        _, hits = await scan_metrics(rig.metrics_ports(), rig.config.api_key)
        found += hits
    return f"{len(found)} hits ({keys_searched} keys, {log_bytes // 1024} KiB of logs)", found


def _limit_text(report: CheckReport) -> str:
    return f"{report.max_solver_in_flight} / {report.solver_limit}"


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summary(report: CheckReport) -> str:
    return (
        f"{len(report.lost)} lost, {report.final}/{report.tasks} final, "
        f"{report.unexplained_duplicates} unexplained dup submits ({report.explained_duplicates} explained)"
    )


def fraction_final(rig: Rig, share: float) -> Any:
    async def predicate() -> bool:
        return await rig.finished_count() >= share * len(rig.submitted)

    return predicate


def holds_remote_ids(rig: Rig, pid: int | None, at_least: int) -> Any:
    async def predicate() -> bool:
        return len(await remote_ids_of(rig, pid)) >= at_least

    return predicate


async def remote_ids_of(rig: Rig, pid: int | None) -> dict[str, str]:
    """Active tasks with a recorded remote id, held by the worker process ``pid`` (None: any)."""
    assert rig.raw is not None
    found: dict[str, str] = {}
    for task_id, raw in (await rig.raw.hgetall(rig.keys.state)).items():
        try:
            state = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            continue
        if not isinstance(state, dict) or state.get("status") != "active" or not state.get("remote_id"):
            continue
        if pid is not None and pid_of(str(state.get("worker", ""))) != pid:
            continue
        found[text(task_id)] = str(state["remote_id"])
    return found


def pid_of(worker_id: str) -> int | None:
    parts = worker_id.split(":")
    return int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None


async def events_per_task(rig: Rig) -> dict[str, int]:
    assert rig.raw is not None
    counts: dict[str, int] = {}
    raw: Any = rig.raw
    for _, fields in await raw.xrange(rig.keys.events, "-", "+"):
        task_id = text(fields.get(b"id", b""))
        counts[task_id] = counts.get(task_id, 0) + 1
    return counts


def count_log_lines(rig: Rig, index: int, words: Sequence[str]) -> int:
    slot = rig.slots[index]
    if slot.log_path is None or not slot.log_path.exists():
        return 0
    return sum(
        1 for line in slot.log_path.read_text(errors="replace").splitlines() if any(w in line for w in words)
    )


async def read_zset(client: Any, key: str) -> dict[str, float]:
    """A sorted set as member -> score (``client`` untyped: redis-py's reply types are unions)."""
    return {text(k): float(v) for k, v in await client.zrange(key, 0, -1, withscores=True)}


def text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _peak(rig: Rig, sim: Mapping[str, Any], finals: Mapping[str, FinalState]) -> dict[str, Any]:
    """The solves the simulator had in flight at its maximum, when that was over the fleet limit: each
    named by task id, with how long before the peak it was submitted, how many submits its task had,
    and the task's final state and attempts (what a diagnosis of the extra solves starts from)."""
    by_key = {key: task_id for task_id, key in rig.submitted.items()}
    submits: Mapping[str, int] = sim.get("submits_by_task", {})
    peak: Mapping[str, Any] = sim.get("peak", {})
    tasks = []
    for entry in peak.get("tasks", []):
        task_id = by_key.get(entry.get("key") or "")
        final = finals.get(task_id) if task_id else None
        tasks.append(
            {
                "task": task_id,
                "accepted_s_ago": entry.get("accepted_s_ago"),
                "state": entry.get("state"),
                "submits": submits.get(entry.get("key") or "", 0),
                "final": final.status if final else None,
                "attempts": final.attempts if final else None,
            }
        )
    twice = sum(1 for t in tasks if t["submits"] > 1)
    return {"in_flight": peak.get("in_flight"), "submitted_more_than_once": twice, "tasks": tasks}

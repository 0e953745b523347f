"""Jepsen-style checks of one chaos run, task by task, from what the queue and the solver recorded.

The inputs are facts gathered after (and during) a run, never the workers' own account of it:

* what the test submitted: task id -> the task key the simulator counts submits by (``pageurl``);
* what the queue shows at the end: each task's final ``Result`` or ``DeadLetter``;
* what the solver saw: submits per task key, and the most tasks it held at once per account;
* samples of the fleet over time (solver slots in use, tasks waiting) and the slot ZSET around kills.

Per task the checker decides: lost (no final state), final status, attempts, time to a final state,
and how many times it reached the solver. A second or later submit of the same task is a
*duplicate*; it is *explained* when the queue itself started another attempt (``attempts - 1``:
a lease that expired after a kill, a retry after an injected fault) or when the scenario names an
injected fault that lost a submit's answer (``fault_allowance``); otherwise it is *unexplained*.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from captcha_queue.models import DeadLetter, Result

__all__ = [
    "CheckReport",
    "Expect",
    "FinalState",
    "FleetSample",
    "KillRecovery",
    "check",
    "final_states",
    "percentile",
    "slot_recovery_s",
    "slot_use_under_backlog",
]


@dataclass(frozen=True)
class FinalState:
    """A task's final state as the queue shows it: a result, or a dead letter."""

    status: str  # success | error | cancelled | expired | dead
    attempts: int
    error_code: str | None = None
    time_to_final_s: float | None = None
    reason: str | None = None


def final_states(
    results: Mapping[str, Result], dead: Mapping[str, DeadLetter] | None = None
) -> dict[str, FinalState]:
    """Final states from the queue's results and dead letters.

    A dead-lettered task also has its final "error" result; it shows here as "dead" with the reason.
    """
    found: dict[str, FinalState] = {}
    for task_id, letter in (dead or {}).items():
        finished = letter.dead_at - letter.task.submitted_at if letter.task else None
        attempts = max((a.attempt for a in letter.history), default=len(letter.history))
        found[task_id] = FinalState("dead", attempts, None, finished, letter.reason)
    for task_id, result in results.items():
        dead_letter = (dead or {}).get(task_id)
        found[task_id] = FinalState(
            "dead" if dead_letter is not None else result.status,
            result.attempts,
            result.error_code,
            max(0.0, result.finished_at - result.submitted_at),
            dead_letter.reason if dead_letter is not None else None,
        )
    return found


@dataclass(frozen=True)
class FleetSample:
    """One look at the fleet: seconds since the run started, slots in use, tasks waiting for one."""

    t_s: float
    in_flight: int
    pending: int  # submitted, not final, not holding a solver slot


@dataclass(frozen=True)
class KillRecovery:
    """For one kill: how long until every solver slot held at the kill was renewed or freed."""

    at_s: float
    recovered_s: float | None  # None: not recovered before sampling ended


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    data = sorted(values)
    return data[min(len(data) - 1, int(q * len(data)))]


def slot_use_under_backlog(
    samples: Iterable[FleetSample], limit: int, *, exclude: Sequence[tuple[float, float]] = ()
) -> tuple[float | None, int]:
    """Mean share of the limit in use over samples with at least ``limit`` tasks waiting.

    ``exclude`` holds windows (start, end) in run seconds where use may legitimately drop: the
    ramp-up, and one lease period after each kill (the dead worker's slots are held until then).
    Returns (share, number of samples used); share is None when no sample qualified.
    """
    used = [
        s.in_flight for s in samples if s.pending >= limit and not any(a <= s.t_s <= b for a, b in exclude)
    ]
    if not used or limit <= 0:
        return None, 0
    return sum(used) / (len(used) * limit), len(used)


def slot_recovery_s(
    at_s: float, held: Mapping[str, float], later: Sequence[tuple[float, float, Mapping[str, float]]]
) -> float | None:
    """Seconds from a kill until every slot held then was renewed, freed, or free for the taking.

    ``held`` is the slot ZSET (holder -> lease deadline, Redis ms) read at the kill; ``later`` are
    later reads as (run seconds, Redis time ms, snapshot). A live worker renews its slots (the
    deadline moves); a dead worker's slot is back once its deadline has passed, since the next
    acquire reclaims expired slots before counting.
    """
    waiting = dict(held)
    for t_s, now_ms, snapshot in later:
        if t_s < at_s:
            continue
        for holder in list(waiting):
            deadline = snapshot.get(holder)
            if deadline is None or deadline != waiting[holder] or now_ms >= deadline:
                del waiting[holder]
        if not waiting:
            return t_s - at_s
    return None


@dataclass(frozen=True)
class Expect:
    """What a scenario demands; ``None`` skips a check."""

    max_lost: int | None = 0
    max_unexplained: int | None = 0
    max_duplicates: int | None = None
    min_success_rate: float | None = None
    max_error: int | None = None
    all_final: bool = True
    #: The service never holds more than N solves at once, whatever the faults: a solve a killed,
    #: stalled or cut-off worker left running stays counted (a ghost slot) until it must be over.
    limit_holds: bool = True
    min_slot_use: float | None = None
    max_slot_recovery_s: float | None = None


@dataclass
class CheckReport:
    """Everything the checker found about one run."""

    tasks: int = 0
    final: int = 0
    lost: list[str] = field(default_factory=list)
    by_status: Counter[str] = field(default_factory=Counter)
    reattempted: int = 0  # tasks with more than one attempt
    submits: int = 0
    duplicate_submits: int = 0
    explained_duplicates: int = 0
    unexplained_duplicates: int = 0
    unexplained_examples: list[str] = field(default_factory=list)
    never_submitted: int = 0  # final tasks the solver never saw (expired, cancelled, rejected early)
    foreign_submits: int = 0  # submits for keys this run never used
    time_to_final_p50_s: float | None = None
    time_to_final_p99_s: float | None = None
    time_to_final_max_s: float | None = None
    solver_limit: int | None = None
    max_solver_in_flight: int | None = None
    slot_use: float | None = None
    slot_use_samples: int = 0
    kill_recoveries: list[KillRecovery] = field(default_factory=list)
    kills: int = 0  # workers killed with SIGKILL during the run

    @property
    def success_rate(self) -> float:
        return self.by_status.get("success", 0) / self.tasks if self.tasks else 0.0

    @property
    def limit_held(self) -> bool | None:
        if self.solver_limit is None or self.max_solver_in_flight is None:
            return None
        return self.max_solver_in_flight <= self.solver_limit

    @property
    def worst_slot_recovery_s(self) -> float | None:
        times = [k.recovered_s for k in self.kill_recoveries]
        if not times:
            return None
        if any(t is None for t in times):
            return float("inf")
        return max(t for t in times if t is not None)

    def violations(self, expect: Expect) -> list[str]:
        """Every way this run missed ``expect``, as readable lines; empty means it passed."""
        found: list[str] = []
        if expect.max_lost is not None and len(self.lost) > expect.max_lost:
            found.append(f"{len(self.lost)} tasks lost (e.g. {', '.join(self.lost[:3])})")
        if expect.all_final and self.final < self.tasks:
            found.append(f"{self.tasks - self.final} of {self.tasks} tasks not final")
        if expect.max_unexplained is not None and self.unexplained_duplicates > expect.max_unexplained:
            found.append(
                f"{self.unexplained_duplicates} unexplained duplicate submits "
                f"(e.g. {', '.join(self.unexplained_examples[:3])})"
            )
        if expect.max_duplicates is not None and self.duplicate_submits > expect.max_duplicates:
            found.append(f"{self.duplicate_submits} duplicate submits (allowed {expect.max_duplicates})")
        if expect.min_success_rate is not None and self.success_rate < expect.min_success_rate:
            found.append(f"success {self.success_rate:.2%} < {expect.min_success_rate:.2%}")
        if expect.max_error is not None:
            failed = self.tasks - self.by_status.get("success", 0)
            if failed > expect.max_error:
                found.append(f"{failed} tasks did not succeed ({dict(self.by_status)})")
        if expect.limit_holds and self.limit_held is False:
            assert self.max_solver_in_flight is not None
            assert self.solver_limit is not None
            found.append(f"solver held {self.max_solver_in_flight} tasks at once > limit {self.solver_limit}")
        if expect.min_slot_use is not None:
            if self.slot_use is None:
                found.append("slot use under backlog was never measured")
            elif self.slot_use < expect.min_slot_use:
                found.append(f"slot use under backlog {self.slot_use:.1%} < {expect.min_slot_use:.0%}")
        if expect.max_slot_recovery_s is not None:
            worst = self.worst_slot_recovery_s
            if worst is not None and worst > expect.max_slot_recovery_s:
                found.append(f"a killed worker's slots came back after {worst:.2f} s")
        return found


def check(
    submitted: Mapping[str, str],
    finals: Mapping[str, FinalState],
    submits_per_key: Mapping[str, int],
    *,
    fault_allowance: Mapping[str, int] | None = None,
    solver_limit: int | None = None,
    max_solver_in_flight: int | None = None,
    samples: Sequence[FleetSample] = (),
    exclude: Sequence[tuple[float, float]] = (),
    kill_recoveries: Sequence[KillRecovery] = (),
    kills: int = 0,
) -> CheckReport:
    """Check one run. ``submitted`` maps task id -> task key (the simulator's per-task counter)."""
    allowance = fault_allowance or {}
    report = CheckReport(tasks=len(submitted), solver_limit=solver_limit)
    report.max_solver_in_flight = max_solver_in_flight
    keys = set(submitted.values())
    report.foreign_submits = sum(n for key, n in submits_per_key.items() if key not in keys)
    times: list[float] = []
    for task_id, key in submitted.items():
        state = finals.get(task_id)
        count = int(submits_per_key.get(key, 0))
        report.submits += count
        if state is None:
            report.lost.append(task_id)
        else:
            report.final += 1
            report.by_status[state.status] += 1
            if state.time_to_final_s is not None:
                times.append(state.time_to_final_s)
            if state.attempts > 1:
                report.reattempted += 1
            if count == 0:
                report.never_submitted += 1
        extra = max(0, count - 1)
        if not extra:
            continue
        report.duplicate_submits += extra
        attempts = state.attempts if state is not None else 1
        explained = min(extra, max(0, attempts - 1) + allowance.get(key, 0))
        report.explained_duplicates += explained
        if extra > explained:
            report.unexplained_duplicates += extra - explained
            if len(report.unexplained_examples) < 10:
                report.unexplained_examples.append(f"{task_id}: {count} submits, {attempts} attempts")
    report.time_to_final_p50_s = percentile(times, 0.50)
    report.time_to_final_p99_s = percentile(times, 0.99)
    report.time_to_final_max_s = max(times) if times else None
    if solver_limit is not None and samples:
        report.slot_use, report.slot_use_samples = slot_use_under_backlog(
            samples, solver_limit, exclude=exclude
        )
    report.kill_recoveries = list(kill_recoveries)
    report.kills = kills
    return report

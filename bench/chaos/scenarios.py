"""The chaos scenarios of ``make chaos``; each returns one row of the report table.

Every scenario runs on its own ``Rig`` (a private Redis, the simulator, worker processes), submits
tasks whose page URL is the simulator's task key, injects its fault, waits until every task is final
(or a deadline), and hands the facts to the checker (``outcome.conclude``). Every row also carries
the fleet-limit check (the simulator's most tasks in flight against N) and the canary key's search.

This module holds the worker-process scenarios (1-4, 9, 10, 15, 16) and the registry; the Redis faults
(5, 6, 11) are in ``redis_faults.py``, the bad solver answers and bad input (7, 8, 12) in
``input_faults.py``, hostile state values and Redis near maxmemory (13, 14) in ``state_faults.py``.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import time
from typing import Any

import msgspec

from .checker import Expect, KillRecovery, slot_recovery_s
from .ha_faults import cluster_primary_killed, sentinel_failover, slot_migration
from .harness import ACCOUNT, CANARY_KEY, Rig, RigConfig, stop_task
from .input_faults import account_errors, fuzz, solver_faults
from .outcome import (
    Row,
    conclude,
    config_for,
    count_log_lines,
    events_per_task,
    fraction_final,
    holds_remote_ids,
    pid_of,
    read_zset,
    remote_ids_of,
    summary,
    text,
)
from .redis_faults import network_faults, redis_killed, redis_restarted_empty
from .state_faults import hostile_state, near_maxmemory

__all__ = ["SCENARIOS", "Row"]


# -- 1. crash storm ---------------------------------------------------------------------------------


async def crash_storm(
    *,
    tasks: int = 10_000,
    workers: int = 8,
    kill_every_s: float = 2.0,
    time_scale: float = 0.01,
    solver_limit: int = 100,
    lease_s: float = 2.0,
    timeout_s: float = 600.0,
) -> Row:
    """kill -9 a random worker every ``kill_every_s``, restart it at once; nothing lost or doubled."""
    started = time.monotonic()
    concurrency = max(20, solver_limit * 2 // workers)
    config = config_for(
        solver_limit, workers=workers, concurrency=concurrency, time_scale=time_scale, lease_s=lease_s
    )
    rng = random.Random(11)
    async with Rig(config) as rig:
        await rig.submit(tasks, max_attempts=6)
        rig.start_sampler()
        kills: list[tuple[float, dict[str, float]]] = []
        storm = asyncio.create_task(_storm(rig, rng, kill_every_s, kills))
        done = await rig.wait_all_final(timeout_s)
        await stop_task(storm)
        await asyncio.sleep(_slot_lease_s(lease_s) + 0.5)  # keep sampling past the last kill's slot lease
        recoveries = [KillRecovery(at, slot_recovery_s(at, held, rig.slot_snapshots)) for at, held in kills]
        ttl = await _ttl_audit(rig)
        exclude = [(0.0, 1.0)] + [(at, at + _slot_lease_s(lease_s) + 0.5) for at, _ in kills]
        expect = Expect(max_slot_recovery_s=_slot_lease_s(lease_s) + 0.5)
        row, report = await conclude(
            rig,
            1,
            "Crash storm",
            f"{tasks:,} tasks, {workers} workers, kill -9 every {kill_every_s:g} s",
            expect,
            exclude=exclude,
            kill_recoveries=recoveries,
            started=started,
            extra_violations=([] if done else ["timed out"]) + ttl["violations"],
            details={"kills": len(kills), "ttl": ttl},
        )
        row.figure = (
            f"{summary(report)}; {len(kills)} kills; every task final; "
            f"per-task keys without TTL: {ttl['per_task_keys']}"
        )
        return row


async def _storm(
    rig: Rig, rng: random.Random, every_s: float, kills: list[tuple[float, dict[str, float]]]
) -> None:
    assert rig.raw is not None
    while True:
        await asyncio.sleep(every_s)
        index = rng.randrange(len(rig.slots))
        held = await read_zset(rig.raw, rig.keys.slots(ACCOUNT))
        kills.append((rig.elapsed_s(), held))
        rig.kill_worker(index)
        await rig.wait_worker_exit(index)
        rig.start_worker(index)


async def _ttl_audit(rig: Rig) -> dict[str, Any]:
    """Every key of the namespace: the fixed namespace-level keys, and anything else (per-task keys)."""
    assert rig.raw is not None
    fixed = set(rig.keys.script_keys) | {
        rig.keys.worker_info,
        rig.keys.slots(ACCOUNT),
        rig.keys.slot_limit(ACCOUNT),
        rig.keys.slot_owners(ACCOUNT),
    }
    without_ttl: list[str] = []
    per_task: list[str] = []
    async for raw_key in rig.raw.scan_iter(match="{" + rig.config.namespace + "}*", count=1000):
        key = text(raw_key)
        if key not in fixed:
            per_task.append(key)
        if await rig.raw.ttl(raw_key) == -1 and key not in fixed:
            without_ttl.append(key)
    violations = [f"{len(without_ttl)} per-task keys without a TTL: {without_ttl[:3]}"] if without_ttl else []
    return {
        "per_task_keys": len(per_task),
        "per_task_without_ttl": len(without_ttl),
        "violations": violations,
    }


# -- 2. fleet limit ---------------------------------------------------------------------------------


async def fleet_limit(
    *,
    tasks: int = 3000,
    workers: int = 4,
    time_scale: float = 0.01,
    solver_limit: int = 100,
    lease_s: float = 2.0,
    timeout_s: float = 300.0,
) -> Row:
    """Backlog far above N: use stays >= 90 % of N; a killed worker's slots return within one lease."""
    started = time.monotonic()
    config = config_for(
        solver_limit, workers=workers, concurrency=solver_limit, time_scale=time_scale, lease_s=lease_s
    )
    async with Rig(config) as rig:
        await rig.submit(tasks)
        rig.start_sampler(0.05)
        # Kill one worker once the fleet is busy, restart it a lease later.
        await rig.wait_until(fraction_final(rig, 0.3), timeout_s)
        assert rig.raw is not None
        held = await read_zset(rig.raw, rig.keys.slots(ACCOUNT))
        at = rig.elapsed_s()
        rig.kill_worker(0)
        await rig.wait_worker_exit(0)
        await asyncio.sleep(lease_s)
        rig.start_worker(0)
        done = await rig.wait_all_final(timeout_s)
        await asyncio.sleep(max(0.0, at + _slot_lease_s(lease_s) + 0.5 - rig.elapsed_s()))  # past a lease
        recovery = KillRecovery(at, slot_recovery_s(at, held, rig.slot_snapshots))
        expect = Expect(
            min_slot_use=0.9,
            max_slot_recovery_s=_slot_lease_s(lease_s) + 0.5,
        )
        row, report = await conclude(
            rig,
            2,
            "Fleet limit",
            f"{tasks:,} tasks, {workers} workers x {solver_limit} concurrency, N={solver_limit}",
            expect,
            exclude=[(0.0, 1.0), (at, at + _slot_lease_s(lease_s) + 0.5)],
            kill_recoveries=[recovery],
            started=started,
            extra_violations=[] if done else ["timed out"],
        )
        recovered = "never" if recovery.recovered_s is None else f"{recovery.recovered_s:.2f} s"
        use = "n/a" if report.slot_use is None else f"{report.slot_use:.1%}"
        row.figure = (
            f"max in flight {report.max_solver_in_flight} <= N={solver_limit}; slot use under backlog {use}; "
            f"killed worker's slots back in {recovered} (task lease {lease_s:g} s, "
            f"slot lease {_slot_lease_s(lease_s):.2f} s)"
        )
        return row


# -- 3. zombie --------------------------------------------------------------------------------------


async def zombie(
    *,
    tasks: int = 1000,
    time_scale: float = 0.02,
    solver_limit: int = 50,
    lease_s: float = 2.0,
    timeout_s: float = 300.0,
) -> Row:
    """SIGSTOP a worker past its lease, then SIGCONT: its late writes are refused; one result per task."""
    started = time.monotonic()
    config = config_for(
        solver_limit, workers=2, concurrency=solver_limit, time_scale=time_scale, lease_s=lease_s
    )
    async with Rig(config) as rig:
        await rig.submit(tasks)
        rig.start_sampler()
        assert rig.raw is not None
        zombie_pid = rig.slots[0].proc.pid if rig.slots[0].proc else 0
        await rig.wait_until(holds_remote_ids(rig, zombie_pid, 5), timeout_s)
        held = await remote_ids_of(rig, zombie_pid)
        rig.kill_worker(0, signal.SIGSTOP)
        await asyncio.sleep(lease_s * 2.5)
        rig.kill_worker(0, signal.SIGCONT)
        rig.note(f"zombie continued holding {len(held)} stale claims")
        done = await rig.wait_all_final(timeout_s)
        await asyncio.sleep(lease_s)  # the zombie's late writes arrive and are refused
        events = await events_per_task(rig)
        doubled = sum(1 for n in events.values() if n > 1)
        counters = await rig.raw.hgetall(rig.keys.counters)
        finished = sum(int(counters.get(k, 0)) for k in (b"completed", b"failed", b"cancelled", b"expired"))
        extra = [] if done else ["timed out"]
        if doubled:
            extra.append(f"{doubled} tasks have more than one final event")
        if finished != len(rig.submitted):
            extra.append(f"counters say {finished} final results for {len(rig.submitted)} tasks")
        dropped = _leases_lost(rig, 0)
        refused = count_log_lines(rig, 0, ("lease lost, nothing written",))
        row, report = await conclude(
            rig,
            3,
            "Zombie",
            f"{tasks:,} tasks, a worker stopped {lease_s * 2.5:g} s (lease {lease_s:g} s)",
            # Not fenceable: solver submits the frozen process had in progress go out when it
            # continues, on slots that expired meanwhile. Reported, not failed (see the limit note).
            Expect(),
            started=started,
            extra_violations=extra,
            details={
                "stale_claims": len(held),
                "dropped_at_renew": dropped,
                "writes_refused": refused,
                "final_events_max": max(events.values(), default=0),
            },
        )
        row.figure = (
            f"the stopped worker woke holding {len(held)} claims with remote ids: its renew found "
            f"{dropped} leases lost and dropped them, {refused} late writes refused by fencing; "
            f"tasks with 2 final results: {doubled}; {summary(report)}"
        )
        if report.limit_held is False:
            over = (report.max_solver_in_flight or 0) - (report.solver_limit or 0)
            row.limit += f" (+{over}: submits the stopped worker had in progress went out when it continued)"
        return row


def _slot_lease_s(lease_s: float) -> float:
    """The solver-slot lease workers use: the task lease plus one renewal period (a third)."""
    return lease_s * 4 / 3


def _leases_lost(rig: Rig, index: int) -> int:
    """Leases the worker's renew reported lost ("renew: N leases lost, ..."), summed over its log."""
    slot = rig.slots[index]
    if slot.log_path is None or not slot.log_path.exists():
        return 0
    found = re.findall(r"renew: (\d+) leases lost", slot.log_path.read_text(errors="replace"))
    return sum(int(n) for n in found)


# -- 4. quiet run -----------------------------------------------------------------------------------


async def quiet_run(
    *,
    tasks: int = 10_000,
    workers: int = 2,
    time_scale: float = 0.01,
    solver_limit: int = 100,
    timeout_s: float = 600.0,
) -> Row:
    """No faults at all: every task solved once."""
    started = time.monotonic()
    config = config_for(solver_limit, workers=workers, concurrency=solver_limit, time_scale=time_scale)
    async with Rig(config) as rig:
        await rig.submit(tasks)
        rig.start_sampler()
        done = await rig.wait_all_final(timeout_s)
        row, report = await conclude(
            rig,
            4,
            "Quiet run",
            f"{tasks:,} tasks, {workers} workers, no faults",
            Expect(max_duplicates=0, max_error=0),
            started=started,
            extra_violations=[] if done else ["timed out"],
        )
        row.figure = (
            f"{report.duplicate_submits} duplicate submits, {len(report.lost)} lost, "
            f"{report.by_status.get('success', 0)}/{report.tasks} solved; "
            f"time to final p50 {report.time_to_final_p50_s or 0:.2f} s, "
            f"p99 {report.time_to_final_p99_s or 0:.2f} s"
        )
        return row


# -- 9. kill during polling -------------------------------------------------------------------------


async def kill_during_polling(
    *,
    tasks: int = 2000,
    time_scale: float = 0.05,
    solver_limit: int = 200,
    lease_s: float = 2.0,
    timeout_s: float = 300.0,
) -> Row:
    """kill -9 every worker while their tasks are being polled: >= 99 % resume their remote id."""
    started = time.monotonic()
    config = config_for(
        solver_limit, workers=2, concurrency=solver_limit, time_scale=time_scale, lease_s=lease_s
    )
    async with Rig(config) as rig:
        await rig.submit(tasks)
        rig.start_sampler()
        await rig.wait_until(holds_remote_ids(rig, None, min(tasks, solver_limit) // 2), timeout_s)
        polling = await remote_ids_of(rig, None)
        for index in range(len(rig.slots)):
            rig.kill_worker(index)
        for index in range(len(rig.slots)):
            await rig.wait_worker_exit(index)
            rig.start_worker(index)
        rig.note(f"killed every worker with {len(polling)} tasks being polled")
        done = await rig.wait_all_final(timeout_s)
        sim = await rig.sim_stats()
        per_key = sim.get("submits_by_task", {})
        resumed = sum(1 for task_id in polling if int(per_key.get(rig.submitted[task_id], 0)) == 1)
        share = resumed / len(polling) if polling else 0.0
        extra = [] if done else ["timed out"]
        if not polling:
            extra.append("no task was being polled at the kill")
        elif share < 0.99:
            extra.append(f"only {share:.1%} of polled tasks resumed their remote id")
        row, report = await conclude(
            rig,
            9,
            "Kill during polling",
            f"{tasks:,} tasks, every worker killed mid-poll",
            Expect(),
            started=started,
            extra_violations=extra,
            details={"polling_at_kill": len(polling), "resumed": resumed},
        )
        row.figure = f"{resumed}/{len(polling)} ({share:.1%}) resumed their remote id; {summary(report)}"
        return row


# -- 10. poison task --------------------------------------------------------------------------------


async def poison_task(
    *,
    tasks: int = 500,
    time_scale: float = 0.01,
    solver_limit: int = 50,
    lease_s: float = 1.0,
    max_attempts: int = 3,
    timeout_s: float = 120.0,
) -> Row:
    """A task that kills its worker every time is dead-lettered after max_attempts; others finish."""
    started = time.monotonic()
    # The poison's solve (800 s of service time) outlasts all its attempts, so no resumed attempt
    # finds it done; each attempt's worker is killed mid-solve and leaves it running at the service.
    # The workers are told the service's longest solve (--orphan-hold-s 900) so those solves stay
    # counted against N. x_sim_solve_s is in real seconds.
    config = config_for(
        solver_limit,
        workers=2,
        concurrency=solver_limit,
        time_scale=time_scale,
        lease_s=lease_s,
        worker_args=("--orphan-hold-s", "900"),
    )
    async with Rig(config) as rig:
        assert rig.raw is not None
        poison_id = (
            await rig.submit(
                1,
                tag="poison",
                max_attempts=max_attempts,
                extra={"x_sim_solve_s": round(800 * time_scale, 3)},
            )
        )[0]
        await rig.submit(tasks, max_attempts=max_attempts + 2)
        rig.start_sampler()
        killer = asyncio.create_task(_kill_whoever_holds(rig, poison_id))
        done = await rig.wait_all_final(timeout_s)
        await stop_task(killer)
        letter = await rig.queue.dead_letter(poison_id) if rig.queue else None
        finals = await rig.finals()
        others_ok = sum(1 for t, f in finals.items() if t != poison_id and f.status == "success")
        extra = [] if done else ["timed out"]
        if letter is None:
            extra.append("the poison task was not dead-lettered")
        if others_ok != tasks:
            extra.append(f"only {others_ok}/{tasks} other tasks succeeded")
        row, report = await conclude(
            rig,
            10,
            "Poison task",
            f"1 poison task (kills its worker) + {tasks:,} others, max_attempts {max_attempts}",
            Expect(max_error=1),
            started=started,
            extra_violations=extra,
            details={
                "dead_letter_reason": letter.reason if letter else None,
                "attempts": len(letter.history) if letter else 0,
            },
        )
        reason = f"'{letter.reason}' after {len(letter.history)} attempts" if letter else "NOT dead-lettered"
        row.figure = (
            f"poison dead-lettered {reason}; others: {others_ok}/{tasks} solved; {len(report.lost)} lost"
        )
        return row


async def _kill_whoever_holds(rig: Rig, task_id: str) -> None:
    """Play the poison: whenever a worker holds the task, kill -9 that worker and restart it."""
    assert rig.raw is not None
    while True:
        raw = await rig.raw.hget(rig.keys.state, task_id)
        state = msgspec.json.decode(raw) if raw else {}
        if state.get("status") == "done":
            return
        pid = pid_of(str(state.get("worker", ""))) if state.get("status") == "active" else None
        for slot in rig.slots:
            if (
                pid is not None
                and slot.proc is not None
                and slot.proc.pid == pid
                and slot.proc.poll() is None
            ):
                rig.kill_worker(slot.index)
                await rig.wait_worker_exit(slot.index)
                rig.start_worker(slot.index)
        await asyncio.sleep(0.02)


# -- 15. account call fails at start ----------------------------------------------------------------


async def account_call_fails_at_start(
    *,
    tasks: int = 2000,
    workers: int = 4,
    time_scale: float = 0.01,
    threads: int = 50,
    failures_per_worker: int = 8,
    timeout_s: float = 300.0,
) -> Row:
    """N comes from threadsinfo, which fails at start: no worker solves before it knows N."""
    started = time.monotonic()
    # The account has exactly N threads and queues anything over them silently: its in-flight
    # maximum is what the fleet did. The first res.php answers (every worker's threadsinfo) fail.
    config = RigConfig(
        workers=workers,
        concurrency=threads * 2,
        solver_limit=threads,
        time_scale=time_scale,
        simulator_args=("--threads", str(threads), "--over-capacity", "queue"),
        limit_from_account=True,
        sim_control_at_start={
            "next_errors": {"res": ["ERROR_SERVER_ERROR"] * (failures_per_worker * workers)}
        },
    )
    async with Rig(config) as rig:
        await rig.submit(tasks)
        rig.start_sampler()
        done = await rig.wait_all_final(timeout_s)
        waited = sum(
            count_log_lines(rig, i, ("could not read the account's threads",)) for i in range(len(rig.slots))
        )
        extra = [] if done else ["timed out"]
        if not waited:
            extra.append("no worker saw the account call fail (the fault missed)")
        row, report = await conclude(
            rig,
            15,
            "Account call fails at start",
            f"{tasks:,} tasks, {workers} workers, N={threads} from threadsinfo, which fails at first",
            Expect(max_duplicates=0, max_error=0),
            started=started,
            extra_violations=extra,
            details={"account_call_failures_logged": waited},
        )
        row.figure = (
            f"max in flight {report.max_solver_in_flight} <= N={threads} (from threadsinfo, after "
            f"{waited} failed account calls); {summary(report)}"
        )
        return row


# -- 16. Redis cut during in.php ---------------------------------------------------------------------


async def redis_cut_during_submit(
    *,
    rounds: int = 20,
    time_scale: float = 0.01,
    lease_s: float = 3.0,
    in_php_s: float = 5.0,
    cut_s: float = 3.5,
    solve_s: float = 3.0,
    timeout_s: float = 120.0,
) -> Row:
    """N = 1; Redis cut past the lease while an in.php is in flight, round after round. The worker
    claims the task again when Redis is back: the old claim's submit (given up) stays counted until
    its solve must be over, and the new claim takes a slot of its own, so never two solves at once."""
    started = time.monotonic()
    # A submit given up mid-flight counts until its solve must be over: the in.php, then the solve
    # (solve_s real seconds, so a second solve started at the reclaim would overlap the first).
    hold_s = (in_php_s + solve_s + 1.0) / time_scale
    config = config_for(
        1,
        workers=1,
        concurrency=4,
        time_scale=time_scale,
        lease_s=lease_s,
        redis_via_proxy=True,
        worker_args=("--orphan-hold-s", f"{hold_s:g}"),
    )
    async with Rig(config) as rig:
        proxy = rig.proxy
        assert proxy is not None
        rig.start_sampler()
        late: list[str] = []
        for n in range(rounds):
            sent = int((await rig.sim_stats()).get("requests", {}).get("in", 0))
            await rig.sim_control(faults={"slow": 1.0}, slow_real_s=in_php_s)
            task_id = (await rig.submit(1, tag=f"cut{n}", extra={"x_sim_solve_s": solve_s}))[0]
            if not await rig.wait_until(_in_php_after(rig, sent), timeout_s):
                late.append(f"round {n}: no in.php reached the simulator")
            await rig.sim_control(faults={})  # only the round's first in.php is slow
            proxy.refuse(True)
            rig.note(f"round {n}: Redis cut for {cut_s:g} s ({proxy.reset_all()} connections reset)")
            await asyncio.sleep(cut_s)
            proxy.heal()
            if not await rig.wait_until(_is_final(rig, task_id), timeout_s, poll_s=0.1):
                late.append(f"round {n}: task {task_id} not final within {timeout_s:g} s")
        done = await rig.wait_all_final(timeout_s)
        reclaimed = sum(1 for f in (await rig.finals()).values() if f.attempts > 1)
        row, report = await conclude(
            rig,
            16,
            "Redis cut during in.php",
            f"{rounds} rounds, N=1, lease {lease_s:g} s, Redis cut {cut_s:g} s in a {in_php_s:g} s in.php",
            Expect(),
            started=started,
            extra_violations=late + ([] if done else ["timed out"]),
            details={"rounds": rounds, "reclaimed": reclaimed},
        )
        row.figure = (
            f"max in flight {report.max_solver_in_flight} <= N=1; {reclaimed}/{rounds} tasks claimed again "
            f"after the cut; {summary(report)}"
        )
        return row


def _in_php_after(rig: Rig, sent: int) -> Any:
    async def predicate() -> bool:
        return int((await rig.sim_stats()).get("requests", {}).get("in", 0)) > sent

    return predicate


def _is_final(rig: Rig, task_id: str) -> Any:
    async def predicate() -> bool:
        assert rig.raw is not None
        return bool(await rig.raw.hexists(rig.keys.results, task_id))

    return predicate


#: name -> (function, full sizes, quick sizes). ``make chaos`` runs the full ones.
SCENARIOS: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
    "crash_storm": (crash_storm, {}, {"tasks": 2000, "workers": 4}),
    "fleet_limit": (fleet_limit, {}, {"tasks": 1000}),
    "zombie": (zombie, {}, {"tasks": 300}),
    "quiet_run": (quiet_run, {}, {"tasks": 2000}),
    "redis_killed_always": (redis_killed, {"fsync": "always"}, {"fsync": "always", "tasks": 1000}),
    "redis_killed_everysec": (redis_killed, {"fsync": "everysec"}, {"fsync": "everysec", "tasks": 1000}),
    "redis_restarted_empty": (redis_restarted_empty, {}, {"tasks": 300}),
    "solver_faults": (solver_faults, {}, {"tasks": 1000}),
    "account_errors": (account_errors, {}, {"tasks": 200}),
    "kill_during_polling": (kill_during_polling, {}, {"tasks": 500}),
    "poison_task": (poison_task, {}, {"tasks": 200}),
    "network_faults": (network_faults, {"long_partition_s": 20.0}, {"tasks": 1000}),
    "fuzz": (fuzz, {}, {"submissions": 500, "corrupt": 2000}),
    "hostile_state": (hostile_state, {}, {"tasks": 500, "hostile": 270}),
    "near_maxmemory": (near_maxmemory, {}, {"maxmemory_mb": 24}),
    "account_call_fails_at_start": (account_call_fails_at_start, {}, {"tasks": 500}),
    "redis_cut_during_submit": (redis_cut_during_submit, {}, {"rounds": 4}),
    "sentinel_switchover": (sentinel_failover, {}, {"tasks": 1000}),
    "sentinel_failover": (sentinel_failover, {"how": "failover"}, {"how": "failover", "tasks": 1000}),
    "sentinel_primary_killed": (sentinel_failover, {"how": "kill"}, {"how": "kill", "tasks": 1000}),
    "sentinel_killed_no_wait": (
        sentinel_failover,
        {"how": "kill", "durable": False},
        {"how": "kill", "durable": False, "tasks": 1000},
    ),
    "sentinel_killed_lagging_no_wait": (  # unfenced: the primary must take writes no replica has
        sentinel_failover,
        {"how": "kill_lagging", "durable": False, "fenced": False},
        {"how": "kill_lagging", "durable": False, "fenced": False, "tasks": 1000},
    ),
    "cluster_primary_killed": (cluster_primary_killed, {}, {"tasks": 1000}),
    "slot_migration": (slot_migration, {}, {"tasks": 1000}),
}

_ = CANARY_KEY  # the canary every rig uses by default (re-exported for the tests)

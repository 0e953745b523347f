"""Scenarios 5, 6 and 11: Redis killed with an append-only file, restarted empty, and network faults
(latency, drops, resets, half-open partitions) between the workers and Redis through the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence
from typing import Any

from captcha_queue.store.server import Persistence

from .checker import Expect
from .harness import Rig, stop_task
from .outcome import (
    Row,
    conclude,
    config_for,
    events_per_task,
    fraction_final,
    pid_of,
    read_zset,
    secret_scan,
    summary,
    text,
)

__all__ = ["network_faults", "redis_killed", "redis_restarted_empty"]


# -- 5. Redis killed with an append-only file -------------------------------------------------------


async def redis_killed(
    *,
    fsync: str = "always",
    tasks: int = 3000,
    time_scale: float = 0.01,
    solver_limit: int = 100,
    down_s: float = 1.0,
    timeout_s: float = 300.0,
) -> Row:
    """kill -9 Redis mid-run (AOF), restart it on the same port: acknowledged submissions survive."""
    started = time.monotonic()
    config = config_for(
        solver_limit,
        workers=2,
        concurrency=solver_limit,
        time_scale=time_scale,
        lease_s=2.0,
        persistence=Persistence(appendonly=True, appendfsync=fsync),
    )
    async with Rig(config) as rig:
        await rig.submit(tasks // 2)
        rig.start_sampler()
        await rig.wait_until(fraction_final(rig, 0.25), timeout_s)
        # Keep submitting while Redis dies: an id returned by submit_many is an acknowledgement.
        acked: list[str] = []
        stop = asyncio.Event()
        producer = asyncio.create_task(_trickle(rig, tasks - tasks // 2, acked, stop))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(rig.redis.kill)
        rig.note(f"redis killed (appendfsync {fsync})")
        await asyncio.sleep(down_s)
        before = await asyncio.to_thread(_restart, rig)
        back_at = time.monotonic()
        reconnect_s = await _workers_reconnect_s(rig, before, back_at, timeout_s=30.0)
        stop.set()
        await producer
        unacked_tail = len(rig.submitted) - len(acked) - tasks // 2
        lost_acks = await _missing(rig, acked + list(rig.submitted)[: tasks // 2])
        # Submissions Redis lost (everysec) can never finish: leave them out of "every task final".
        for task_id in lost_acks:
            rig.submitted.pop(task_id, None)
        done = await rig.wait_all_final(timeout_s)
        extra = [] if done else ["timed out"]
        if fsync == "always" and lost_acks:
            extra.append(f"{len(lost_acks)} acknowledged submissions lost with appendfsync always")
        if reconnect_s is None or reconnect_s > 5.0:
            extra.append(f"workers reconnected after {reconnect_s} s (> 5 s)")
        row, report = await conclude(
            rig,
            5,
            f"Redis killed (appendfsync {fsync})",
            f"{tasks:,} tasks, kill -9 Redis, down {down_s:g} s",
            Expect(),
            started=started,
            extra_violations=extra,
            details={
                "acknowledged_lost": len(lost_acks),
                "reconnect_s": reconnect_s,
                "unacknowledged": unacked_tail,
            },
        )
        row.figure = (
            f"{len(lost_acks)} acknowledged submissions lost; "
            f"workers back {reconnect_s or 0:.2f} s after Redis; "
            f"{summary(report)}"
        )
        return row


async def _trickle(rig: Rig, count: int, acked: list[str], stop: asyncio.Event) -> None:
    """Submit small batches until ``count`` are acknowledged or ``stop``; failures are not acks."""
    while len(acked) < count:
        try:
            acked += await rig.submit(min(20, count - len(acked)), tag="trickle")
        except Exception:
            if stop.is_set():
                return
            await asyncio.sleep(0.05)
        else:
            await asyncio.sleep(0.01)


def _restart(rig: Rig) -> dict[str, float]:
    rig.redis.start()
    import redis as sync_redis

    client = sync_redis.Redis.from_url(rig.redis.url)
    try:
        members: Any = client.zrange(rig.keys.workers, 0, -1, withscores=True)
        return {text(k): float(v) for k, v in members}
    finally:
        client.close()
        rig.note("redis restarted")


async def _workers_reconnect_s(
    rig: Rig, before: dict[str, float], back_at: float, timeout_s: float
) -> float | None:
    """Seconds from Redis coming back until every live worker renewed its heartbeat there."""
    assert rig.raw is not None
    alive = {k: v for k, v in before.items()}
    deadline = back_at + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            now = await read_zset(rig.raw, rig.keys.workers)
            renewed = {k for k, v in now.items() if v > alive.get(k, 0.0)}
            live_pids = {s.proc.pid for s in rig.slots if s.proc is not None and s.proc.poll() is None}
            renewed_pids = {pid_of(k) for k in renewed}
            if live_pids <= renewed_pids:
                return time.monotonic() - back_at
        await asyncio.sleep(0.05)
    return None


async def _missing(rig: Rig, ids: Sequence[str]) -> list[str]:
    assert rig.raw is not None
    missing: list[str] = []
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        async with rig.raw.pipeline(transaction=False) as pipe:
            for task_id in chunk:
                pipe.hexists(rig.keys.tasks, task_id)
            present = await pipe.execute()
        missing += [t for t, ok in zip(chunk, present, strict=True) if not ok]
    return missing


# -- 6. Redis restarted empty -----------------------------------------------------------------------


async def redis_restarted_empty(
    *, tasks: int = 1000, time_scale: float = 0.02, solver_limit: int = 50, timeout_s: float = 120.0
) -> Row:
    """Redis comes back with no data: the loss is detected and reported with a count, never silent.

    The producer calls ``check_data_loss()`` before and after (epoch + submission watermark); the
    workers do it every renew period and must log it at CRITICAL with the count.
    """
    started = time.monotonic()
    config = config_for(solver_limit, workers=2, concurrency=solver_limit, time_scale=time_scale, lease_s=2.0)
    async with Rig(config) as rig:
        assert rig.queue is not None
        assert rig.raw is not None
        await rig.submit(tasks)
        rig.start_sampler()
        await rig.wait_until(fraction_final(rig, 0.3), timeout_s)
        assert await rig.queue.check_data_loss() is None  # records the data set
        truth = len(rig.submitted) - await rig.finished_count()  # at most this many are lost
        await asyncio.to_thread(rig.redis.kill)
        await asyncio.to_thread(rig.redis.stop)  # drops its data directory: the restart is empty
        await asyncio.to_thread(rig.redis.start)
        rig.note("redis restarted empty")
        loss = await _producer_check(rig, timeout_s=15.0)
        worker_lines = await _wait_worker_loss_log(rig, len(rig.slots), timeout_s=10.0)
        extra: list[str] = []
        if loss is None:
            extra.append("the producer's check_data_loss() saw nothing")
        elif not truth <= loss.lost <= truth + solver_limit:
            extra.append(f"the producer reported {loss.lost} lost; {truth} were unfinished at the kill")
        sim = await rig.sim_stats()
        over = int(sim.get("max_in_flight", 0))
        if over > solver_limit:
            extra.append(f"the solver held {over} tasks at once > limit {solver_limit}")
        if len(worker_lines) < len(rig.slots):
            extra.append(f"{len(worker_lines)} of {len(rig.slots)} workers logged the loss at CRITICAL")
        secrets_text, leaked = await secret_scan(rig)
        if leaked:
            extra.append(f"the API key leaked: {', '.join(leaked[:5])}")
        reported = loss.lost if loss is not None else 0
        row = Row(
            number=6,
            name="Redis restarted empty",
            size=f"{tasks:,} tasks, Redis restarted without its data",
            figure=(
                f"detected: {'yes' if loss else 'NO'}; producer reports {reported} tasks lost "
                f"(unfinished at the kill: {truth}); {len(worker_lines)}/{len(rig.slots)} workers logged "
                f"CRITICAL '{worker_lines[0][1] if worker_lines else '-'}'"
            ),
            passed=not extra,
            violations=extra,
            secrets=secrets_text,
            limit=f"{over} / {solver_limit}",
            elapsed_s=round(time.monotonic() - started, 1),
            details={
                "lost_reported": reported,
                "unfinished_at_kill": truth,
                "describe": loss.describe() if loss else None,
                "worker_lines": [line for line, _ in worker_lines],
            },
        )
        return row


async def _producer_check(rig: Rig, timeout_s: float) -> Any:
    assert rig.queue is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return await rig.queue.check_data_loss()
        except Exception:  # Redis is still coming back
            await asyncio.sleep(0.1)
    return None


async def _wait_worker_loss_log(rig: Rig, workers: int, timeout_s: float) -> list[tuple[str, str]]:
    """(file, count of lost tasks) of each worker log with a CRITICAL data-loss line."""
    deadline = time.monotonic() + timeout_s
    found: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        found = []
        for path in rig.log_files():
            if not path.name.startswith("worker"):
                continue
            for line in path.read_text(errors="replace").splitlines():
                if "critical" in line.lower() and "lost its data" in line:
                    match = re.search(r"(\d+) tasks that were queued or in flight are gone", line)
                    found.append((path.name, f"{match.group(1) if match else '?'} tasks ... are gone"))
                    break
        if len(found) >= workers:
            break
        await asyncio.sleep(0.2)
    return found


# -- 11. network faults between workers and Redis ---------------------------------------------------


async def network_faults(
    *,
    tasks: int = 3000,
    time_scale: float = 0.01,
    solver_limit: int = 100,
    lease_s: float = 3.0,
    cycle_s: float = 1.0,
    long_partition_s: float = 0.0,
    timeout_s: float = 600.0,
) -> Row:
    """Latency, dropped and reset connections, half-open partitions through the proxy: no loss, no doubles."""
    started = time.monotonic()
    config = config_for(
        solver_limit,
        workers=2,
        concurrency=solver_limit,
        time_scale=time_scale,
        lease_s=lease_s,
        redis_via_proxy=True,
    )
    async with Rig(config) as rig:
        await rig.submit(tasks)
        rig.start_sampler()
        chaos = asyncio.create_task(_network_chaos(rig, cycle_s, long_partition_s))
        done = await rig.wait_all_final(timeout_s)
        await stop_task(chaos)
        assert rig.proxy is not None
        rig.proxy.heal()
        events = await events_per_task(rig)
        doubled = sum(1 for n in events.values() if n > 1)
        extra = [] if done else ["timed out"]
        if doubled:
            extra.append(f"{doubled} tasks have more than one final event")
        stats = rig.proxy.stats
        row, report = await conclude(
            rig,
            11,
            "Network faults (proxy to Redis)",
            f"{tasks:,} tasks; latency, drops, resets, half-open",
            Expect(),
            started=started,
            extra_violations=extra,
            details={"proxy": vars(stats).copy()},
        )
        row.figure = (
            f"{stats.dropped} drops, {stats.reset} resets, "
            f"{sum(1 for _, e in rig.events if 'half-open' in e)} "
            f"half-open partitions; {summary(report)}; tasks with 2 final results: {doubled}"
        )
        return row


async def _network_chaos(rig: Rig, cycle_s: float, long_partition_s: float) -> None:
    proxy = rig.proxy
    assert proxy is not None
    step = 0
    while True:
        await asyncio.sleep(cycle_s)
        kind = step % 4
        step += 1
        if kind == 0:
            proxy.set_latency(0.05)
            rig.note("latency 50 ms each way")
            await asyncio.sleep(cycle_s)
            proxy.set_latency(0.0)
        elif kind == 1:
            rig.note(f"dropped {proxy.drop_all()} connections")
        elif kind == 2:
            rig.note(f"reset {proxy.reset_all()} connections")
        else:
            # One long partition (past the socket timeout) once the run is under way; short ones after.
            length = long_partition_s if long_partition_s and step == 8 else cycle_s
            proxy.half_open(True)
            rig.note(f"half-open partition for {length:g} s")
            await asyncio.sleep(length)
            proxy.half_open(False)

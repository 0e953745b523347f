"""What every workload shares: the producer interface, captcha-queue's producer, and the drivers that time
any producer the same way (throughput, open-loop latency, submit-only), plus the figures they yield.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .harness import (
    BenchError,
    ProcessGroup,
    RunResult,
    bounded,
    command_delta,
    descendants,
    peak_rss_mb,
    percentile,
)

__all__ = [
    "CQProducer",
    "Producer",
    "Task",
    "Throughput",
    "async_redis",
    "drive_open_loop",
    "drive_throughput",
    "overhead_stages",
    "procs_label",
    "round_or_none",
    "submit_only",
    "throughput_metrics",
    "tree_rss",
]

Task = tuple[str, Mapping[str, str], str]  # (method, params, priority)


class Producer(Protocol):
    async def prepare(self, count: int) -> None: ...
    async def submit(self, task: Task, n: int = 0) -> str: ...
    async def submit_many(self, tasks: Sequence[Task]) -> list[str]: ...
    async def wait_one(self, task_id: str) -> float: ...
    async def wait_all(self, ids: Sequence[str]) -> dict[str, float]: ...


# -- captcha-queue's producer ----------------------------------------------------------------------


class CQProducer:
    """captcha-queue's producer API: ``submit_many`` in batches, ``as_completed`` / ``wait_result``."""

    def __init__(self, redis_url: str, namespace: str, timeout_s: float) -> None:
        self.redis_url = redis_url
        self.namespace = namespace
        self.timeout_s = timeout_s
        self.q: Any = None
        self.woken: dict[str, tuple[Any, float]] = {}

    async def __aenter__(self) -> CQProducer:
        from captcha_queue.queue._producer import AsyncCaptchaQueue

        self.q = AsyncCaptchaQueue.from_url(self.redis_url, namespace=self.namespace)
        await self.q.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.q is not None:
            await self.q.aclose()

    async def prepare(self, count: int) -> None:
        return None

    async def submit(self, task: Task, n: int = 0) -> str:
        method, params, priority = task
        task_id: str = await self.q.submit(method, dict(params), priority=priority)
        return task_id

    async def submit_many(self, tasks: Sequence[Task]) -> list[str]:
        from captcha_queue.models import TaskSpec

        ids: list[str] = []
        for start in range(0, len(tasks), 1000):
            specs = [
                TaskSpec(method=m, params=dict(p), priority=pr)  # type: ignore[arg-type]
                for m, p, pr in tasks[start : start + 1000]
            ]
            ids += await self.q.submit_many(specs)
        return ids

    async def wait_one(self, task_id: str) -> float:
        result = await self.q.wait_result(task_id, timeout_s=self.timeout_s)
        if result is None:
            raise BenchError(f"task {task_id} had no result within {self.timeout_s:.0f} s")
        woke = time.monotonic()
        # Wall clock too: the result's own timestamps are Redis server time on this same machine.
        self.woken[task_id] = (result, time.time())
        return woke

    async def wait_all(self, ids: Sequence[str]) -> dict[str, float]:
        seen: dict[str, float] = {}
        async for result in self.q.as_completed(list(ids), timeout_s=self.timeout_s):
            seen[result.id] = time.monotonic()
        return seen

    async def worker_count(self) -> int:
        stats = await self.q.stats()
        return int(stats.workers)


# -- the drivers -----------------------------------------------------------------------------------


@dataclass
class Throughput:
    ids: list[str]
    submit_s: float
    elapsed_s: float
    seen: dict[str, float]
    started: float


async def drive_throughput(producer: Producer, tasks: Sequence[Task], timeout_s: float) -> Throughput:
    await producer.prepare(len(tasks))
    started = time.monotonic()
    ids = await producer.submit_many(tasks)
    submit_s = time.monotonic() - started
    seen = await bounded(producer.wait_all(ids), timeout_s, "waiting for every result")
    return Throughput(ids, submit_s, time.monotonic() - started, seen, started)


async def drive_open_loop(
    producer: Producer, tasks: Sequence[Task], rate_per_s: float, timeout_s: float
) -> list[float]:
    """Submit at a fixed rate, one waiter per task; returns each task's end-to-end seconds."""
    await producer.prepare(len(tasks))
    begin = time.monotonic() + 0.05
    latencies: list[float] = []

    async def one(n: int, task: Task) -> None:
        await asyncio.sleep(max(0.0, begin + n / rate_per_s - time.monotonic()))
        sent = time.monotonic()
        task_id = await producer.submit(task, n)
        latencies.append(await producer.wait_one(task_id) - sent)

    await bounded(
        asyncio.gather(*(one(n, t) for n, t in enumerate(tasks))), timeout_s, "the open-loop latency run"
    )
    return latencies


async def submit_only(producer: Producer, tasks: Sequence[Task]) -> float:
    """Tasks per second of ``submit_many`` with no worker running."""
    await producer.prepare(len(tasks))
    started = time.monotonic()
    await producer.submit_many(tasks)
    return len(tasks) / (time.monotonic() - started)


def procs_label(n: int) -> str:
    return f"{n} proc" + ("s" if n > 1 else "")


def round_or_none(value: float | None, digits: int = 2) -> float | None:
    return round(value, digits) if value is not None else None


def tree_rss(group: ProcessGroup) -> dict[int, float]:
    pids = [p.pid for p in group.procs if p.poll() is None]
    pids += [child for pid in list(pids) for child in descendants(pid)]
    return peak_rss_mb(pids)


def throughput_metrics(
    result: RunResult,
    run: Throughput,
    before: Mapping[str, int],
    after: Mapping[str, int],
    rss: Mapping[int, float],
) -> None:
    done = len(run.seen)
    commands = command_delta(before, after)
    scripts = sum(n for name, n in commands.items() if name in ("evalsha", "eval", "fcall", "evalsha_ro"))
    top = sorted(commands.items(), key=lambda kv: -kv[1])[:6]
    result.notes.append(
        "Redis commands per task: " + ", ".join(f"{name} {n / max(1, done):.2f}" for name, n in top)
    )
    result.metrics["lua_calls_per_task"] = round(scripts / max(1, done), 2)
    result.metrics.update(
        tasks=len(run.ids),
        completed=done,
        elapsed_s=round(run.elapsed_s, 3),
        throughput_per_s=round(done / run.elapsed_s, 1) if run.elapsed_s else None,
        submit_per_s=round(len(run.ids) / run.submit_s) if run.submit_s else None,
        redis_cmds_per_task=round(sum(commands.values()) / max(1, done), 2),
        peak_rss_mb=round(max(rss.values()), 1) if rss else None,
    )


def overhead_stages(result: RunResult, woken: Any, latency_s: float) -> None:
    """Where captcha-queue's overhead goes, from each result's Redis-time stamps and the wake time.

    pickup: submitted -> claimed by a worker; worker: claimed -> final result written, minus L (the
    in.php and res.php round trips, the poll schedule, the slot and the finishing script); notify:
    result written -> the producer's waiter returns.
    """
    pickup: list[float] = []
    worker: list[float] = []
    notify: list[float] = []
    for res, woke_wall in woken:
        if res.started_at is None:
            continue
        pickup.append((res.started_at - res.submitted_at) * 1000)
        worker.append((res.finished_at - res.started_at - latency_s) * 1000)
        notify.append((woke_wall - res.finished_at) * 1000)
    for name, values in (("pickup", pickup), ("worker", worker), ("notify", notify)):
        result.metrics[f"{name}_p50_ms"] = round_or_none(percentile(values, 0.5))
        result.metrics[f"{name}_p99_ms"] = round_or_none(percentile(values, 0.99))


def async_redis(url: str) -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url, max_connections=16)

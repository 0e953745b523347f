"""W3 notification latency: from the final result being written to the waiting producer waking.

A separate *writer* process holds the tasks (captcha-queue: claimed under a lease, as a worker would) and
writes their final results when told to; it takes ``t0 = time.monotonic()`` right before each write (so the
figure includes the write's own round trip: an upper bound). The producer process has waiters blocked on
those tasks and takes the wake time the moment each one returns. ``CLOCK_MONOTONIC`` is system-wide on
Linux, so the two processes' readings compare directly.

* 1 waiter: rounds; in each one waiter waits, then one result is written.
* N waiters: N waiters wait at once, then the writer writes the N results back to back (a burst).

The naive design is measured alike: its writer does ``HSET`` + ``SETEX``, its waiters poll ``HGET``
once per (scaled) second. The writer and producer talk through two Redis keys (``go`` and ``t0``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from . import naive
from .harness import BenchError, ProcessGroup, RunResult, bounded, child_env, percentile

__all__ = ["run_w3"]

SETTLE_PER_WAITER_S = 0.0005


async def _writer(args: argparse.Namespace) -> None:
    control = aioredis.Redis.from_url(args.redis_url)
    stamps: dict[str, float] = {}
    try:
        if args.system == "captcha-queue":
            await _cq_writer(args, control, stamps)
        else:
            await _naive_writer(args, control, stamps)
        if stamps:
            await control.hset(f"{args.control}:t0", mapping={k: repr(v) for k, v in stamps.items()})
        await control.rpush(f"{args.control}:done", "1")
    finally:
        await control.aclose()


async def _next_go(control: aioredis.Redis, name: str) -> str:
    while True:
        item = await control.blpop([f"{name}:go"], timeout=5)
        if item is not None:
            return _text(item[1])


async def _cq_writer(args: argparse.Namespace, control: aioredis.Redis, stamps: dict[str, float]) -> None:
    from captcha_queue.models import Solution
    from captcha_queue.queue._producer import AsyncCaptchaQueue

    async with AsyncCaptchaQueue.from_url(args.redis_url, namespace=args.namespace) as q:
        claims: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while len(claims) < args.count and time.monotonic() < deadline:
            for claim in await q.claim(
                "bench-w3-writer", args.count - len(claims), lease_s=120.0, block_s=1.0
            ):
                claims[claim.task_id] = claim
        await control.rpush(f"{args.control}:ready", str(len(claims)))
        answer = Solution(text="bench")
        while claims:
            go = await _next_go(control, args.control)
            targets = list(claims) if go == "*" else [go]
            for task_id in targets:
                claim = claims.pop(task_id)
                stamps[task_id] = time.monotonic()
                await q.complete(claim, answer)


async def _naive_writer(args: argparse.Namespace, control: aioredis.Redis, stamps: dict[str, float]) -> None:
    keys = naive.NaiveKeys(args.namespace)
    pending = {_text(raw) for raw in await control.lrange(f"{args.control}:ids", 0, -1)}
    await control.rpush(f"{args.control}:ready", str(len(pending)))
    while pending:
        go = await _next_go(control, args.control)
        targets = sorted(pending) if go == "*" else [go]
        for task_id in targets:
            pending.discard(task_id)
            stamps[task_id] = time.monotonic()
            await control.hset(keys.results, task_id, '{"status": "success"}')
            await control.setex(keys.marker(task_id), naive.RESULT_TTL_S, "1")


async def run_w3(
    redis_url: str, system: str, waiters: int, rounds: int, time_scale: float, timeout_s: float
) -> RunResult:
    """W3 for one system and one waiter count (1: ``rounds`` rounds; N: one burst of N)."""
    count = rounds if waiters == 1 else waiters
    config = "1 waiter" if waiters == 1 else f"{waiters} waiters"
    result = RunResult("W3", system, config)
    control_key = f"bench-w3-{secrets.token_hex(3)}"
    namespace = f"bench-w3-{secrets.token_hex(3)}" if system == "captcha-queue" else f"naive-w3-{control_key}"
    # The naive waiters each poll on their own connection, as separate producers would.
    client = aioredis.Redis.from_url(redis_url, max_connections=count + 16)
    group = ProcessGroup()
    producer: Any = None
    try:
        if system == "captcha-queue":
            from .drivers import CQProducer
            from .workloads import w1_task

            producer = CQProducer(redis_url, namespace, timeout_s)
            await producer.__aenter__()
            ids = await producer.submit_many([w1_task(n) for n in range(count)])
        else:
            producer = naive.NaiveProducer(
                client, naive.NaiveKeys(namespace), naive.RESULT_POLL_S * time_scale
            )
            ids = [producer.new_id() for _ in range(count)]
            await client.rpush(f"{control_key}:ids", *ids)
        argv = ["-m", "bench.notify", "writer", "--system", system]
        argv += ["--namespace", namespace, "--count", str(count), "--control", control_key]
        group.spawn_python(argv, child_env({"REDIS_URL": redis_url}))
        ready = await client.blpop([f"{control_key}:ready"], timeout=30)
        if ready is None or int(ready[1]) != count:
            raise BenchError(f"the W3 writer did not get its {count} tasks ready")
        woke = await bounded(_wait(client, producer, control_key, ids, waiters), timeout_s, "W3")
        await client.blpop([f"{control_key}:done"], timeout=30)
        raw = await client.hgetall(f"{control_key}:t0")
        t0 = {_text(k): float(v) for k, v in raw.items()}
        latencies_ms = [(woke[i] - t0[i]) * 1000 for i in ids if i in woke and i in t0]
        result.metrics.update(
            samples=len(latencies_ms),
            wake_p50_ms=_r(percentile(latencies_ms, 0.5)),
            wake_p99_ms=_r(percentile(latencies_ms, 0.99)),
            wake_max_ms=_r(max(latencies_ms, default=None)),
        )
        if system == "naive":
            result.notes.append(
                f"HGET polling every {naive.RESULT_POLL_S * time_scale * 1000:.0f} ms (scaled)"
            )
    finally:
        group.stop_all(grace_s=2.0)
        if system == "captcha-queue" and producer is not None:
            await producer.__aexit__(None, None, None)
        with contextlib.suppress(Exception):
            await client.delete(*[f"{control_key}:{k}" for k in ("t0", "ids", "go", "ready", "done")])
        await client.aclose()
    return result


async def _wait(
    client: aioredis.Redis, producer: Any, control_key: str, ids: Sequence[str], waiters: int
) -> dict[str, float]:
    woke: dict[str, float] = {}

    async def waiter(task_id: str) -> None:
        woke[task_id] = await producer.wait_one(task_id)

    if waiters == 1:
        for task_id in ids:
            one = asyncio.create_task(waiter(task_id))
            await asyncio.sleep(0.02)  # let the waiter check and subscribe before the write
            await client.rpush(f"{control_key}:go", task_id)
            await one
        return woke
    tasks = [asyncio.create_task(waiter(task_id)) for task_id in ids]
    await asyncio.sleep(0.1 + SETTLE_PER_WAITER_S * len(ids))
    await client.rpush(f"{control_key}:go", "*")
    await asyncio.gather(*tasks)
    return woke


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _r(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.notify writer")
    parser.add_argument("role", choices=["writer"])
    # From the environment by default: a password in the URL must stay off the command line (ps).
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="default: $REDIS_URL")
    parser.add_argument("--system", choices=["captcha-queue", "naive"], required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--control", required=True)
    args = parser.parse_args(argv)
    if not args.redis_url:
        parser.error("set REDIS_URL (or --redis-url)")
    asyncio.run(_writer(args))


if __name__ == "__main__":
    main(sys.argv[1:])

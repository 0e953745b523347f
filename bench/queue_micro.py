"""The queue core on its own: submit_many rate and Redis round trips per task, claim -> complete.

    python -m bench.queue_micro [--tasks 10000] [--batch 100] [--runs 3]

Uses REDIS_URL or starts a private server (stopped at exit). Two measurements:

* submit_many: ``--tasks`` tasks in one call (validated, encoded with msgspec, one round trip), best
  and median of ``--runs`` runs, each in a fresh namespace. Target: >= 50,000 tasks/s.
* worker path: claim ``--batch`` tasks per call, then record_remote and complete each (what a worker
  does), counting the client's round trips. Target: <= 3 round trips per task.

Not a test: nothing is asserted; the numbers are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from captcha_queue import AsyncCaptchaQueue, Solution, TaskSpec
from captcha_queue.models import ParamValue
from captcha_queue.store.connection import make_client
from captcha_queue.store.server import resolved_redis

RC: dict[str, ParamValue] = {"googlekey": "6Le-bench-site-key", "pageurl": "https://example.com/login"}


class RoundTrips:
    """Counts the commands a client sends one by one (each is one round trip)."""

    def __init__(self, execute: Callable[..., Coroutine[Any, Any, Any]]) -> None:
        self._execute = execute
        self.count = 0

    async def __call__(self, *args: Any, **options: Any) -> Any:
        self.count += 1
        return await self._execute(*args, **options)


async def _drop_namespace(q: AsyncCaptchaQueue) -> None:
    keys = [key async for key in q.client.scan_iter(match="{" + q.namespace + "}*", count=1000)]
    if keys:
        await q.client.delete(*keys)


async def bench_submit(url: str, tasks: int, runs: int) -> list[float]:
    rates = []
    specs = [TaskSpec("userrecaptcha", RC, priority=("high", "normal", "low")[i % 3]) for i in range(tasks)]
    client = make_client(url)
    try:
        for _ in range(runs):
            q = AsyncCaptchaQueue(client, namespace=f"bench-{uuid.uuid4().hex[:8]}")
            await q.stats()  # scripts loaded, connection open: time only the submission
            started = time.perf_counter()
            ids = await q.submit_many(specs)
            elapsed = time.perf_counter() - started
            assert len(ids) == tasks
            rates.append(tasks / elapsed)
            await _drop_namespace(q)
    finally:
        await client.aclose()
    return rates


async def bench_worker_path(url: str, tasks: int, batch: int) -> tuple[float, float]:
    client = make_client(url)
    q = AsyncCaptchaQueue(client, namespace=f"bench-{uuid.uuid4().hex[:8]}")
    try:
        await q.submit_many([TaskSpec("userrecaptcha", RC)] * tasks)
        counter = RoundTrips(client.execute_command)
        client.execute_command = counter  # type: ignore[method-assign]  # count what the client sends
        started = time.perf_counter()
        done = 0
        while done < tasks:
            claims = await q.claim("bench-worker", batch, lease_s=60, block_s=0)

            async def solve(claim: Any) -> None:
                claim = await q.record_remote(claim, "7" * 10)
                await q.complete(claim, Solution("token"))

            await asyncio.gather(*(solve(c) for c in claims))
            done += len(claims)
        elapsed = time.perf_counter() - started
        client.execute_command = counter._execute  # type: ignore[method-assign]  # and restore it
        await _drop_namespace(q)
        return counter.count / tasks, tasks / elapsed
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100, help="tasks per claim call")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with resolved_redis() as (url, _server):
        rates = asyncio.run(bench_submit(url, args.tasks, args.runs))
        per_task, rate = asyncio.run(bench_worker_path(url, min(args.tasks, 5000), args.batch))
    best, median = max(rates), statistics.median(rates)
    print(f"submit_many of {args.tasks} tasks: best {best:,.0f} tasks/s, median {median:,.0f}")
    print(
        f"claim({args.batch}) -> record_remote -> complete: {per_task:.2f} round trips per task, "
        f"{rate:,.0f} tasks/s through one process"
    )


if __name__ == "__main__":
    main()

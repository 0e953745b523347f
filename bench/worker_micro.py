"""Memory and throughput of one worker process holding 2,000 solves in flight.

    python -m bench.worker_micro [--tasks 4000] [--concurrency 2000] [--time-scale 0.5]

Starts a private Redis (or uses REDIS_URL), the simulator and one ``captcha-queue worker`` process as
subprocesses (so the worker's RSS is its own), submits the tasks, samples the worker's in-flight count
and resident memory while they run, and prints peak RSS (VmHWM), the highest in-flight count seen and
the throughput. Every process it starts is stopped by pid. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from captcha_queue.processes import Processes
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.store.server import resolved_redis

KEY = "0123456789abcdef0123456789abcdef"


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


async def run(args: argparse.Namespace, redis_url: str) -> None:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "REDIS_URL": redis_url, "CAPTCHA_QUEUE_NAMESPACE": namespace, "CAPTCHAAI_KEY": KEY}
    cq = [sys.executable, "-m", "captcha_queue"]
    procs = Processes()
    sim = procs.spawn(
        [*cq, "simulator", "--port", "0", "--time-scale", str(args.time_scale), "--threads", "100000"],
        env,
        capture=True,
    )
    worker: subprocess.Popen[bytes] | None = None
    try:
        assert sim.stdout is not None
        sim_url = (await asyncio.to_thread(sim.stdout.readline)).decode().strip()
        env["CAPTCHAAI_URL"] = sim_url
        worker = procs.spawn(
            [
                *cq,
                "worker",
                "--processes",
                "1",
                "--concurrency",
                str(args.concurrency),
                "--solver-limit",
                str(args.concurrency * 2),
                "--time-scale",
                str(args.time_scale),
                "--log-level",
                "warning",
            ],
            env,
        )
        async with AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as q:
            for _ in range(300):  # the worker registers within seconds
                if await q.workers():
                    break
                await asyncio.sleep(0.1)
            idle_rss_kb = _status_kb(worker.pid, "VmRSS")
            params = [
                {"sitekey": "0x4AAAAAAAC3DHQFLr1GavRN", "pageurl": f"https://bench.test/{i}"}
                for i in range(args.tasks)
            ]
            started = time.monotonic()
            ids = await q.submit_many([{"method": "turnstile", "params": p} for p in params])
            peak_in_flight = 0
            done = 0
            while done < len(ids):
                stats = await q.stats()
                peak_in_flight = max(peak_in_flight, stats.in_flight)
                done = stats.completed + stats.failed + stats.expired + stats.dead
                await asyncio.sleep(0.25)
            elapsed = time.monotonic() - started
            stats = await q.stats()
        peak_rss_kb = _status_kb(worker.pid, "VmHWM")
        print(f"tasks                 {args.tasks} (turnstile, time scale {args.time_scale})")
        print(f"concurrency           {args.concurrency}")
        print(f"peak in flight        {peak_in_flight}")
        print(f"completed / failed    {stats.completed} / {stats.failed}")
        print(f"elapsed               {elapsed:.1f} s  ({args.tasks / elapsed:.0f} tasks/s)")
        print(f"worker RSS idle       {idle_rss_kb / 1024:.1f} MiB")
        print(f"worker peak RSS       {peak_rss_kb / 1024:.1f} MiB (VmHWM)")
    finally:
        if worker is not None:
            procs.stop(worker, grace_s=40.0)  # first: it finishes its polls against the simulator
        procs.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=2000)
    parser.add_argument("--time-scale", type=float, default=0.5)
    args = parser.parse_args()
    with resolved_redis() as (url, _server):
        asyncio.run(run(args, url))


if __name__ == "__main__":
    main()

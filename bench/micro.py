"""The per-task costs of the queue, small and quick: what ``python -m bench.compare`` runs per revision.

    python -m bench.micro [--json] [--by-script] [--w1-tasks 2000] [--w2-tasks 400]
                          [--submits 2000] [--waiters 1000]

One private Redis (or REDIS_URL) and one simulator; each figure is also part of ``make bench``:

* ``w1_cmds_per_task`` / ``w2_cmds_per_task``: every command Redis executed during W1 (instant solver)
  and W2 (HTTP simulator), Lua's inner commands included (``INFO commandstats``), per finished task.
  Exact counts, independent of the machine's load. Target: <= 20. With ``--by-script``, also
  ``w1_by_script`` / ``w2_by_script``: the same commands per task split by the script that ran them
  (the EVALSHA included; from MONITOR, which slows Redis: use those runs for counts only).
* ``submit_per_s``: single awaited ``submit()`` calls per second from one process. Target: >= 4,000.
* ``w2_worker_cpu_ms_per_task``: CPU time (user + system, /proc) of the worker processes during W2,
  per finished task. Target: <= 1.2.
* ``w3_p99_ms``: wake-up p99 of 1,000 concurrent waiters. Target: <= 5.

Timings need a quiet machine; the command counts do not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
from dataclasses import replace
from typing import Any

from captcha_queue.store.server import EmbeddedRedis, check_redis, redis_url_from_env

from .drivers import CQProducer, drive_throughput
from .harness import (
    ProcessGroup,
    ScriptCounter,
    Simulator,
    child_env,
    command_counts,
    command_delta,
    cpu_seconds,
    run_async,
)
from .notify import run_w3
from .workloads import SOLVE_METHOD, Bench, Sizes, w1_task, w2_task

__all__ = ["TARGETS", "main", "measure"]

#: figure -> (target, True if higher is better)
TARGETS: dict[str, tuple[float, bool]] = {
    "w1_cmds_per_task": (20.0, False),
    "w2_cmds_per_task": (20.0, False),
    "submit_per_s": (4000.0, True),
    "w2_worker_cpu_ms_per_task": (1.2, False),
    "w2_pct_of_ideal": (90.0, True),
    "w3_p99_ms": (5.0, False),
}


def _breakdown(commands: dict[str, int], done: int) -> dict[str, float]:
    top = sorted(commands.items(), key=lambda kv: -kv[1])[:12]
    return {name: round(n / max(1, done), 2) for name, n in top}


async def _commands_run(
    bench: Bench, tasks: list[Any], *, http: bool, concurrency: int, label: str, by_script: bool = False
) -> dict[str, Any]:
    namespace = f"bench-{label}-{secrets.token_hex(3)}"
    counter = ScriptCounter(bench.redis_url) if by_script else None
    async with (
        bench.cq_workers(namespace, 1, concurrency, http=http, limit=concurrency) as (group, _),
        CQProducer(bench.redis_url, namespace, bench.sizes.run_timeout_s) as producer,
    ):
        pids = [p.pid for p in group.procs] + group.remember_children()
        cpu_before = cpu_seconds(pids)
        before = command_counts(bench.redis_url)
        with counter or contextlib.nullcontext():
            run = await drive_throughput(producer, tasks, bench.sizes.run_timeout_s)
        after = command_counts(bench.redis_url)
        cpu_s = cpu_seconds(pids) - cpu_before
    done = max(1, len(run.seen))
    commands = command_delta(before, after)
    figures = {
        f"{label}_cmds_per_task": round(sum(commands.values()) / done, 2),
        f"{label}_breakdown": _breakdown(commands, done),
        f"{label}_worker_cpu_ms_per_task": round(1000 * cpu_s / done, 3),
        f"{label}_per_s": round(done / run.elapsed_s, 1) if run.elapsed_s else None,
    }
    if counter is not None:
        figures[f"{label}_by_script"] = counter.per_task(done)
    return figures


async def measure(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    s = bench.sizes
    out: dict[str, Any] = {}
    out.update(
        await _commands_run(
            bench,
            [w1_task(n) for n in range(args.w1_tasks)],
            http=False,
            concurrency=500,
            label="w1",
            by_script=args.by_script,
        )
    )
    bench.clean()
    w2 = await _commands_run(
        bench,
        [w2_task(n) for n in range(args.w2_tasks)],
        http=True,
        concurrency=args.w2_limit,
        label="w2",
        by_script=args.by_script,
    )
    out.update(w2)
    if w2.get("w2_per_s"):
        out["w2_pct_of_ideal"] = round(100 * w2["w2_per_s"] / (args.w2_limit / s.latency_s), 1)
    bench.clean()
    out["submit_per_s"] = (await bench.cq_submit_single(args.submits)).get("submit_per_s")
    bench.clean()
    w3 = await run_w3(bench.redis_url, "captcha-queue", args.waiters, 1, s.time_scale, s.run_timeout_s)
    out["w3_p99_ms"] = w3.get("wake_p99_ms")
    bench.clean()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object (for bench.compare)")
    parser.add_argument(
        "--by-script", action="store_true", help="split the command counts by script (MONITOR: counts only)"
    )
    parser.add_argument("--w1-tasks", type=int, default=2000)
    parser.add_argument("--w2-tasks", type=int, default=400)
    parser.add_argument("--w2-limit", type=int, default=200)
    parser.add_argument("--submits", type=int, default=2000)
    parser.add_argument("--waiters", type=int, default=1000)
    args = parser.parse_args(argv)
    sizes = replace(Sizes.quick(), w2_limit=args.w2_limit, w2_concurrency=args.w2_limit)
    env_url = redis_url_from_env()
    with ProcessGroup() as group:
        server = None if env_url else EmbeddedRedis(extra_args=("--maxclients", "20000"))
        if server is not None:
            server.start()
            url = server.url
        else:
            assert env_url is not None
            url = env_url
            check_redis(url)
        try:
            fixed = f"{sizes.sim_solve_s:g}"
            sim_args = ["--time-scale", str(sizes.time_scale), "--threads", "20000", "--seed", "7"]
            sim_args += ["--over-capacity", "no_slot", "--latency", f"{SOLVE_METHOD}={fixed}:{fixed}:{fixed}"]
            simulator = Simulator.start(group, sim_args, child_env())
            bench = Bench(
                url, sizes, private_redis=server is not None, simulator=simulator, log=lambda _t: None
            )
            bench.redis_pid = server.pid if server is not None else None
            bench.clean()
            figures = run_async(measure(bench, args))
        finally:
            if server is not None:
                server.stop()
    if args.json:
        print(json.dumps(figures))
        return
    for name, value in figures.items():
        target = TARGETS.get(name)
        goal = "" if target is None else f"   (target {'>=' if target[1] else '<='} {target[0]:g})"
        print(f"{name:<28} {value}{goal}")


if __name__ == "__main__":
    main()

"""``python -m bench`` (``make bench``): every workload, every system, one Redis, one simulator, one report.

    python -m bench              # the full run (about 10-15 minutes on 2 cores)
    python -m bench --quick      # small sizes (under 2 minutes), written to <date>-quick.md
    python -m bench --only W1,W3 --systems captcha-queue,naive
    python -m bench --quick --only STALL --systems captcha-queue   # the W1 stall regression only

Redis: ``REDIS_URL`` if set (keys of each run are deleted after it), else a private server that is
flushed between runs and stopped at the end. The simulator is ``captcha-queue simulator`` with a fixed
solve time for the W2 method (``--latency turnstile=S:S:S``) and the same time scale as every client.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from captcha_queue.store.server import EmbeddedRedis, check_redis, redact_url, redis_url_from_env

from . import naive
from .dashboard import DASH_CLIENTS, DASH_EVENTS, run_dashboard
from .gateway import GatewaySizes, run_gateway_bench, run_gateway_w2
from .harness import (
    ProcessGroup,
    RunResult,
    Simulator,
    child_env,
    event_loop_name,
    machine_info,
    package_versions,
    redis_version,
    run_async,
)
from .notify import run_w3
from .peers import ARQ_SETTINGS, SAQ_SETTINGS
from .profiling import explain_misses
from .report import Meta, check_targets, draw_chart, format_table, write_markdown
from .workloads import FIRST_POLL_S, POLL_INTERVAL_S, SOLVE_METHOD, Bench, Sizes

SYSTEMS = ("captcha-queue", "naive", "arq", "saq")
WORKLOADS = ("W1", "W2", "W3", "W4", "STALL", "GW", "DASH")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = (
    "captcha-queue",
    "redis",
    "hiredis",
    "aiohttp",
    "msgspec",
    "uvloop",
    "arq",
    "saq",
    "matplotlib",
    "pyinstrument",
)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="workloads to run (default: all)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="systems to run (default: all)")
    parser.add_argument("--time-scale", type=float, default=None, help="scale of solve and poll times")
    parser.add_argument("--solve-s", type=float, default=None, help="fixed solve time before scaling")
    parser.add_argument("--no-profile", action="store_true", help="skip profiling missed targets")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the .md and .png go")
    return parser.parse_args(argv)


@contextlib.contextmanager
def resolve_redis() -> Iterator[tuple[str, int | None]]:
    """(url, pid of the private server, or None with REDIS_URL)."""
    url = redis_url_from_env()
    if url:
        check_redis(url)
        yield url, None
        return
    with EmbeddedRedis(extra_args=("--maxclients", "20000")) as server:
        yield server.url, server.pid


def settings_text(sizes: Sizes) -> dict[str, str]:
    scale = sizes.time_scale
    return {
        "time scale": (
            f"{scale} (solve time L = {sizes.solve_s:g} s x {scale} = {sizes.latency_s:g} s; {SOLVE_METHOD} "
            f"polls first after {FIRST_POLL_S:g} x {scale} = {FIRST_POLL_S * scale:g} s, then every "
            f"{POLL_INTERVAL_S:g} x {scale} = {POLL_INTERVAL_S * scale:g} s)"
        ),
        "simulator": (
            f"captcha-queue simulator --time-scale {scale} --threads 20000 --over-capacity no_slot "
            f"--latency {SOLVE_METHOD}={sizes.sim_solve_s:g}:{sizes.sim_solve_s:g}:{sizes.sim_solve_s:g}: "
            f"it answers {sizes.answer_margin_s:g} s x {scale} before L, so the poll at L finds the answer "
            "despite timer jitter (the client cannot see an answer between polls, so L is the solve time "
            "as a client observes it); a fresh account (API key) per run, so max in flight is the run's own"
        ),
        "W1": (
            f"best of {sizes.w1_repeats} alternating rounds; {sizes.w1_tasks:,} tasks, "
            f"{sizes.w1_concurrency} jobs in flight per worker process for every "
            f"system, worker processes {', '.join(map(str, sizes.w1_processes))}"
        ),
        "W2": (
            f"{sizes.w2_tasks:,} tasks, {sizes.w2_processes} worker process(es) x {sizes.w2_concurrency} "
            f"concurrency, fleet limit {sizes.w2_limit:,} (captcha-queue --solver-limit); the naive design "
            f"runs its 4 processes for a {sizes.naive_window_s:g} s window; latency: "
            f"{sizes.latency_tasks:,} tasks submitted one by one at {sizes.latency_load:.0%} of the "
            "ideal rate"
        ),
        "W3": (
            f"1 waiter x {sizes.w3_rounds} rounds (naive: {sizes.naive_w3_rounds}); {sizes.w3_waiters:,} "
            "concurrent waiters, one burst of results written back to back"
        ),
        "W4": (
            f"processes {', '.join(map(str, sizes.w4_processes))} x in flight "
            f"{', '.join(f'{n:,}' for n in sizes.w4_in_flight)}, {sizes.w4_waves} x in-flight tasks each"
        ),
        "W1 stall": (
            f"{sizes.stall_rounds} rounds: {sizes.stall_backlog:,} tasks submitted, then 2 instant-solver "
            f"worker processes x {sizes.w1_concurrency} with --solver-limit {sizes.stall_limit:,} started, "
            f"then {sizes.stall_trickle:,} tasks one awaited submit() at a time (wait_result on every "
            "50th); a round stalls if the completed count stands still for 5 s or more"
        ),
        "captcha-queue": (
            "captcha-queue worker --processes P --concurrency C --lease-s 30 --solver instant|captchaai "
            "--time-scale S --solver-limit N; producer submit_many (batches of 1,000) + as_completed "
            "(push); latency run: submit + wait_result per task"
        ),
        "naive": (
            f"{naive.PROCESSES} synchronous processes (W1: 1 and 2), BLPOP, fixed "
            f"{naive.SOLVER_POLL_S:g} s x scale res.php polling, HSET + SETEX results, producer HGET "
            f"polling every {naive.RESULT_POLL_S:g} s x scale; submits pipelined in batches of 500"
        ),
        "bench process": (
            f"every producer runs in the bench process on {event_loop_name()}; one system at a time"
        ),
        "arq": ARQ_SETTINGS,
        "saq": SAQ_SETTINGS,
    }


async def run_all(
    bench: Bench, workloads: Sequence[str], systems: Sequence[str], gw_sizes: GatewaySizes | None = None
) -> None:
    s = bench.sizes
    say = bench.log
    peers = [p for p in ("arq", "saq") if p in systems]
    if "W1" in workloads:
        say("W1: queue overhead")
        first = len(bench.results)
        for _ in range(s.w1_repeats):  # rounds alternate the systems, so a noisy spell hits them all
            for procs in s.w1_processes:
                if "captcha-queue" in systems:
                    await bench.guarded("W1", "captcha-queue", f"{procs}", bench.cq_w1(procs))
                if "naive" in systems:
                    await bench.guarded("W1", "naive", f"{procs}", bench.naive_w1(procs))
                for peer in peers:
                    await bench.guarded("W1", peer, f"{procs}", bench.peer_w1(peer, procs))
        keep_best(bench, first)
        if "captcha-queue" in systems:
            await bench.guarded("W1 submit", "captcha-queue", "", bench.cq_submit_only())
            await bench.guarded("W1 submit", "captcha-queue", "", bench.cq_submit_single())
        for peer in peers:
            await bench.guarded("W1 submit", peer, "", bench.peer_submit_only(peer))
    if "W2" in workloads:
        say("W2: solver workload")
        if "captcha-queue" in systems:
            await bench.guarded(
                "W2",
                "captcha-queue",
                "",
                bench.cq_w2(s.w2_processes, s.w2_concurrency, s.w2_limit, s.w2_tasks),
            )
        if "naive" in systems:
            await bench.guarded("W2", "naive", "", bench.naive_w2())
        for peer in peers:
            await bench.guarded("W2", peer, "", bench.peer_w2(peer))
        if "captcha-queue" in systems:
            await bench.guarded("W2 latency", "captcha-queue", "", bench.cq_latency())
        if "naive" in systems:
            await bench.guarded("W2 latency", "naive", "", bench.naive_latency())
        for peer in peers:
            await bench.guarded("W2 latency", peer, "", bench.peer_latency(peer))
    if "W3" in workloads:
        say("W3: notification latency")
        for system in ("captcha-queue", "naive"):
            if system not in systems:
                continue
            rounds = s.w3_rounds if system == "captcha-queue" else s.naive_w3_rounds
            for waiters in (1, s.w3_waiters):
                coro = run_w3(bench.redis_url, system, waiters, rounds, s.time_scale, s.run_timeout_s)
                await bench.guarded("W3", system, f"{waiters}", coro)
    if "STALL" in workloads and "captcha-queue" in systems:
        say("W1 stall: the pattern that once held the fleet for a slot lease")
        await bench.guarded("W1 stall", "captcha-queue", "", bench.cq_stall())
    if "DASH" in workloads and "captcha-queue" in systems:
        say(f"DASH: the dashboard's event feed, {DASH_CLIENTS} SSE clients")
        coro = run_dashboard(bench.redis_url, DASH_CLIENTS, DASH_EVENTS, s.run_timeout_s)
        await bench.guarded("DASH", "captcha-queue", f"{DASH_CLIENTS} clients", coro)
    if "W4" in workloads and "captcha-queue" in systems:
        say("W4: scale")
        for in_flight in s.w4_in_flight:
            for procs in s.w4_processes:
                per_proc = max(1, in_flight // procs)
                coro = bench.cq_w2(procs, per_proc, in_flight, in_flight * s.w4_waves, workload="W4")
                await bench.guarded("W4", "captcha-queue", f"{procs}x{in_flight}", coro)

    if "GW" in workloads and "captcha-queue" in systems:
        say("GW: the gateway on one process")
        try:
            for result in await run_gateway_bench(bench.redis_url, gw_sizes or GatewaySizes()):
                bench.record(result)
        except Exception as exc:
            bench.record(RunResult("GW", "captcha-queue", "", error=f"{type(exc).__name__}: {exc}"))
        if bench.simulator is not None:
            coro = run_gateway_w2(
                bench.redis_url,
                bench.simulator.base_url,
                time_scale=bench.sizes.time_scale,
                solve_s=bench.sizes.solve_s,
                sizes=gw_sizes or GatewaySizes(),
            )
            await bench.guarded("GW W2", "captcha-queue", "", coro)


def keep_best(bench: Bench, first: int) -> None:
    """Of the W1 rounds since ``first``, keep each (system, config)'s best run; note every figure."""
    rounds = bench.results[first:]
    best: dict[tuple[str, str], RunResult] = {}
    figures: dict[tuple[str, str], list[str]] = {}
    for r in rounds:
        key = (r.system, r.config)
        figures.setdefault(key, []).append("failed" if r.error else f"{r.get('throughput_per_s') or 0:,.0f}")
        current = best.get(key)
        if current is None or (r.get("throughput_per_s") or 0) > (current.get("throughput_per_s") or 0):
            best[key] = r
    for key, r in best.items():
        if len(figures[key]) > 1:
            r.notes.insert(0, f"best of {len(figures[key])} rounds (tasks/s: {', '.join(figures[key])})")
    bench.results[first:] = list(best.values())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.time_scale is not None:
        sizes = _replace(sizes, time_scale=args.time_scale)
    if args.solve_s is not None:
        sizes = _replace(sizes, solve_s=args.solve_s)
    workloads = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    systems = [s.strip().lower() for s in args.systems.split(",") if s.strip()]
    command = shlex.join(["python", "-m", "bench", *argv])
    if os.environ.get("MAKELEVEL"):  # started by make: say so, with the arguments make passed
        command = f"make bench BENCH_ARGS={shlex.quote(shlex.join(argv))}" if argv else "make bench"

    started = time.monotonic()
    date = time.strftime("%Y-%m-%d")
    stem = f"{date}-quick" if args.quick else date
    with resolve_redis() as (url, redis_pid), ProcessGroup() as group:
        private = redis_pid is not None
        sim_args = ["--time-scale", str(sizes.time_scale), "--threads", "20000", "--over-capacity", "no_slot"]
        fixed = f"{sizes.sim_solve_s:g}"
        sim_args += ["--latency", f"{SOLVE_METHOD}={fixed}:{fixed}:{fixed}"]
        sim_args += ["--seed", "7"]
        simulator = Simulator.start(group, sim_args, child_env())
        bench = Bench(url, sizes, private_redis=private, simulator=simulator, redis_pid=redis_pid)
        shown = redact_url(url)
        bench.log(f"Redis {shown} ({'private' if private else 'REDIS_URL'}), simulator {simulator.base_url}")
        bench.clean()
        gw_sizes = GatewaySizes.quick() if args.quick else GatewaySizes()
        run_async(run_all(bench, workloads, systems, gw_sizes))
        targets = check_targets(bench.results, sizes.poll_bound, sizes.w2_concurrency, sizes.w3_waiters)
        if not args.no_profile:
            explain_misses(bench, targets)
        versions = package_versions(PACKAGES)
        versions["server"] = redis_version(url)
    meta = Meta(
        date=date,
        command=command,
        machine=machine_info(),
        versions=versions,
        settings=settings_text(sizes),
        notes=[
            "arq 0.28 declares redis<6 and SAQ's redis extra redis<8; both ran on the redis-py above "
            "(installed without its pin, see the Makefile bench target), the same client every system used.",
            "make bench installs the bench extra (and arq, see below) and runs python -m bench.",
            "Peak RSS is VmHWM from /proc/<pid>/status, the largest over the worker's process tree.",
            "Redis commands per task count every command the server executed during the run, including "
            "the ones run inside Lua scripts and MULTI blocks (producer, workers, heartbeats, idle blocking "
            "calls), divided by the tasks finished; 'of which Lua calls' counts the script invocations.",
            "Queue overhead = end-to-end latency seen by the producer (submit call to wake-up) minus L. "
            "captcha-queue's poll scheduler sends polls falling due within 20 ms of each other together "
            "(some up to 20 ms early); the others poll exactly on schedule. With the answer ready just "
            "before L, an early poll collects it early, so captcha-queue's overhead may read up to 20 ms "
            "low (it can go negative).",
            "CPU % is per process group over the measured interval (100 % = one core).",
        ],
        duration_s=time.monotonic() - started,
    )
    md_path, png_path = args.out / f"{stem}.md", args.out / f"{stem}.png"
    write_markdown(md_path, meta, bench.results, targets)
    charted = draw_chart(png_path, bench.results)
    print(format_table(bench.results, targets))
    print(f"\nwrote {md_path}" + (f" and {png_path}" if charted else " (no chart: none of W1-W3 ran)"))
    return 0


def _replace(sizes: Sizes, **changes: float) -> Sizes:
    from dataclasses import replace

    return replace(sizes, **changes)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())

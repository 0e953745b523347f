"""The four workloads, driven the same way for every system.

* **W1 queue overhead**: N tasks through an instant solver, end to end (first submit until every result
  is visible to the producer) with 1 and 2 worker processes; submit-only rate; Redis commands per task
  from ``INFO commandstats`` deltas.
* **W2 solver workload**: tasks through the HTTP simulator with a fixed solve time L and the method's poll
  cadence scaled alike: throughput against the ideal ``min(limit, concurrency) / L``, ``in.php`` and
  ``res.php`` calls per task, peak RSS per worker process; then an open-loop run at half the ideal rate
  (so a slot is always free) for the queue's own overhead: end-to-end latency minus L.
* **W3 notification latency** (see :mod:`bench.notify`).
* **W4 scale**: W2 for captcha-queue with 1, 2 and 4 worker processes and 1,000 / 5,000 in flight.
* **W1 stall** (``--only STALL``): the pattern that once froze the fleet for a slot lease, repeated: two
  instant-solver workers with a fleet limit, a backlog submitted before they start, then one awaited
  ``submit()`` at a time (``wait_result`` on some) while they run; the longest time the completed count
  stood still with work left, per round.

A producer is any object with ``prepare``, ``submit``, ``submit_many``, ``wait_one`` and ``wait_all``
(captcha-queue's, the naive design's, arq's and SAQ's); bench.drivers times them identically.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import naive
from .drivers import (
    CQProducer,
    Producer,
    Task,
    Throughput,
    async_redis,
    drive_open_loop,
    drive_throughput,
    overhead_stages,
    procs_label,
    round_or_none,
    submit_only,
    throughput_metrics,
    tree_rss,
)
from .harness import (
    BenchError,
    CpuMeter,
    ProcessGroup,
    RunResult,
    Simulator,
    bounded,
    child_env,
    command_counts,
    descendants,
    percentile,
    read_line,
    sim_counts,
    sim_max_in_flight,
)
from .peers import ArqProducer, SaqProducer, worker_argv

__all__ = ["SOLVE_METHOD", "Bench", "Sizes", "w1_task", "w2_task"]


#: The W2 method: Turnstile polls first after 10 s, then every 5 s (scaled by the time scale).
SOLVE_METHOD = "turnstile"
FIRST_POLL_S = 10.0
POLL_INTERVAL_S = 5.0


def w1_task(n: int) -> Task:
    return (
        SOLVE_METHOD,
        {"sitekey": "0x4AAAAAAABench", "pageurl": f"https://bench.example/w1/{n}"},
        "normal",
    )


def w2_task(n: int) -> Task:
    return (
        SOLVE_METHOD,
        {"sitekey": "0x4AAAAAAABench", "pageurl": f"https://bench.example/w2/{n}"},
        "normal",
    )


@dataclass(frozen=True)
class Sizes:
    """Every size of a run; ``quick()`` is the < 2 minute version."""

    w1_tasks: int = 20_000
    w1_processes: tuple[int, ...] = (1, 2)
    w1_concurrency: int = 1000
    w1_repeats: int = 2
    #: L = solve_s x time_scale = 5 s: the ideal (limit / L = 400 tasks/s, about 1,600 HTTP requests/s
    #: for the simulator and as many for the worker) stays within what 2 cores carry; at L = 1 s it
    #: would be 2,000 tasks/s, and the figure would measure the machine, not the queue.
    time_scale: float = 0.25
    solve_s: float = 20.0  # on the method's poll grid: 10 s, then every 5 s
    #: The simulator answers this much (before scaling) ahead of L, so the poll at L finds the answer
    #: whatever the timer jitter between two busy processes; the client cannot see it any sooner.
    answer_margin_s: float = 0.5
    w2_tasks: int = 6000  # 3 waves of the fleet limit
    w2_processes: int = 1
    w2_concurrency: int = 2000
    w2_limit: int = 2000
    naive_window_s: float = 30.0
    latency_tasks: int = 1000
    latency_load: float = 0.5
    naive_latency_tasks: int = 10
    w3_rounds: int = 200
    naive_w3_rounds: int = 40
    w3_waiters: int = 1000
    w4_processes: tuple[int, ...] = (1, 2, 4)
    w4_in_flight: tuple[int, ...] = (1000, 5000)
    w4_waves: int = 2
    stall_backlog: int = 5000  # submitted before the workers start
    stall_trickle: int = 20_000  # then one awaited submit() at a time
    stall_rounds: int = 4
    stall_limit: int = 100_000  # --solver-limit: slots are taken, never the bottleneck
    run_timeout_s: float = 180.0
    peers: tuple[str, ...] = ("arq", "saq")

    @property
    def latency_s(self) -> float:
        return self.solve_s * self.time_scale

    @property
    def sim_solve_s(self) -> float:
        """The simulator's fixed solve time before scaling."""
        return self.solve_s - self.answer_margin_s

    @property
    def poll_bound(self) -> int:
        """The res.php calls per task the issue allows: ceil(L / interval) + 1."""
        return math.ceil(self.solve_s / POLL_INTERVAL_S) + 1

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            w1_tasks=2000,
            w1_concurrency=500,
            w1_repeats=1,
            time_scale=0.05,  # L = 1 s
            w2_tasks=400,
            w2_concurrency=200,
            w2_limit=200,
            naive_window_s=4.0,
            latency_tasks=100,
            naive_latency_tasks=4,
            w3_rounds=30,
            naive_w3_rounds=10,
            w3_waiters=200,
            w4_processes=(1, 2),
            w4_in_flight=(400,),
            w4_waves=2,
            stall_backlog=1000,
            stall_trickle=4000,
            stall_rounds=2,
            run_timeout_s=60.0,
        )

    def scaled(self, factor: float) -> Sizes:
        """Task counts multiplied by ``factor`` (the smoke test's toy size)."""
        return replace(
            self,
            w1_tasks=max(10, int(self.w1_tasks * factor)),
            w2_tasks=max(10, int(self.w2_tasks * factor)),
            latency_tasks=max(5, int(self.latency_tasks * factor)),
        )


async def _longest_freeze(producer: CQProducer, total: int, every_s: float = 0.25) -> float:
    """Seconds the completed count stood still at most, until it reaches ``total``."""
    last, since, longest = -1, time.monotonic(), 0.0
    while True:
        completed = int((await producer.q.stats()).completed)
        now = time.monotonic()
        if completed != last:
            last, since = completed, now
        longest = max(longest, now - since)
        if completed >= total:
            return longest
        await asyncio.sleep(every_s)


# -- the bench: one Redis, one simulator, every system ----------------------------------------------


@dataclass
class Bench:
    redis_url: str
    sizes: Sizes
    private_redis: bool
    simulator: Simulator | None = None
    results: list[RunResult] = field(default_factory=list)
    log: Any = field(default=lambda text: print(text, flush=True))
    redis_pid: int | None = None  # the private server, for its CPU use
    #: Set by the profiler: run a 1-process captcha-queue worker under pyinstrument, writing here.
    profile_worker_to: Path | None = None

    def new_key(self) -> str:
        """A fresh simulator account per run, so its max-in-flight counter is the run's own."""
        return secrets.token_hex(16)

    def clean(self) -> None:
        from .harness import delete_pattern, flush

        if self.private_redis:
            flush(self.redis_url)
        else:
            delete_pattern(self.redis_url, "{bench-*", "naive-*", "arq:*", "bench-arq-*", "saq:*")

    def record(self, result: RunResult) -> RunResult:
        self.results.append(result)
        shown = ", ".join(f"{k}={v}" for k, v in result.metrics.items() if v is not None)
        self.log(f"  {result.workload:<10} {result.system:<14} {result.config:<22} {result.error or shown}")
        return result

    async def guarded(self, workload: str, system: str, config: str, coro: Any) -> RunResult:
        """Run one measurement; a failure is recorded with its reason and the bench goes on."""
        started = time.monotonic()
        try:
            # Every run is bounded as a whole too (each wait inside it has its own deadline).
            result: RunResult = await bounded(coro, self.sizes.run_timeout_s * 3, f"{workload} {system}")
        except Exception as exc:
            result = RunResult(workload, system, config, error=f"{type(exc).__name__}: {exc}".strip())
        finally:
            with contextlib.suppress(Exception):
                self.clean()
        result.metrics["run_s"] = round(time.monotonic() - started, 1)
        return self.record(result)

    # -- captcha-queue ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def cq_workers(
        self, namespace: str, processes: int, concurrency: int, *, http: bool, limit: int | None = None
    ) -> AsyncIterator[tuple[ProcessGroup, str]]:
        key = self.new_key()
        env = child_env({"REDIS_URL": self.redis_url, "CAPTCHA_QUEUE_NAMESPACE": namespace})
        argv = [sys.executable, "-m", "captcha_queue", "worker", "--processes", str(processes)]
        if self.profile_worker_to is not None and processes == 1:
            out = str(self.profile_worker_to)
            profiler = ["-m", "pyinstrument", "-r", "pyisession", "-o", out, "-i", "0.005"]
            argv[1:3] = [*profiler, "-m", "captcha_queue"]
        argv += ["--concurrency", str(concurrency), "--lease-s", "30", "--log-level", "warning"]
        if http:
            assert self.simulator is not None
            env |= {"CAPTCHAAI_URL": self.simulator.base_url, "CAPTCHAAI_KEY": key}
            argv += ["--solver", "captchaai", "--time-scale", str(self.sizes.time_scale)]
            argv += ["--solver-limit", str(limit or concurrency * processes)]
        else:
            argv += ["--solver", "instant"]
            if limit is not None:
                argv += ["--solver-limit", str(limit)]
        group = ProcessGroup()
        try:
            group.spawn(argv, env)
            async with CQProducer(self.redis_url, namespace, self.sizes.run_timeout_s) as probe:
                deadline = time.monotonic() + 30
                while await probe.worker_count() < processes:
                    if time.monotonic() > deadline:
                        raise BenchError(f"{processes} captcha-queue workers did not register within 30 s")
                    await asyncio.sleep(0.05)
            yield group, key
        finally:
            # A profiled worker writes its profile after it stops: give it the time to.
            group.stop_all(grace_s=60.0 if self.profile_worker_to is not None else 10.0)

    async def cq_w1(self, processes: int) -> RunResult:
        namespace = f"bench-w1-{secrets.token_hex(3)}"
        tasks = [w1_task(n) for n in range(self.sizes.w1_tasks)]
        result = RunResult("W1", "captcha-queue", procs_label(processes))
        async with (
            self.cq_workers(namespace, processes, self.sizes.w1_concurrency, http=False) as (group, _),
            CQProducer(self.redis_url, namespace, self.sizes.run_timeout_s) as producer,
        ):
            cpu = self._cpu(group)
            before = command_counts(self.redis_url)
            run = await drive_throughput(producer, tasks, self.sizes.run_timeout_s)
            after = command_counts(self.redis_url)
            result.metrics.update(cpu.stop())
            rss = tree_rss(group)
        throughput_metrics(result, run, before, after, rss)
        return result

    async def cq_stall(self) -> RunResult:
        """W1 stall: see the module docstring. A round stalls if results stand still for 5 s or more."""
        s = self.sizes
        config = f"{procs_label(2)} x {s.w1_concurrency}, limit {s.stall_limit:,}, {s.stall_rounds} rounds"
        result = RunResult("W1 stall", "captcha-queue", config)
        freezes: list[float] = []
        elapsed: list[float] = []
        for _ in range(s.stall_rounds):
            namespace = f"bench-stall-{secrets.token_hex(3)}"
            async with CQProducer(self.redis_url, namespace, s.run_timeout_s) as producer:
                await producer.submit_many([w1_task(n) for n in range(s.stall_backlog)])
                workers = self.cq_workers(namespace, 2, s.w1_concurrency, http=False, limit=s.stall_limit)
                async with workers:
                    started = time.monotonic()
                    total = s.stall_backlog + s.stall_trickle
                    watch = asyncio.create_task(_longest_freeze(producer, total))
                    waits: list[asyncio.Task[float]] = []
                    for n in range(s.stall_backlog, total):
                        task_id = await producer.submit(w1_task(n))
                        if n % 50 == 0:
                            waits.append(asyncio.create_task(producer.wait_one(task_id)))
                    try:
                        await bounded(asyncio.gather(*waits), s.run_timeout_s, "the awaited results")
                        freezes.append(await bounded(watch, s.run_timeout_s, "every result"))
                    finally:
                        watch.cancel()
                    elapsed.append(time.monotonic() - started)
        result.metrics.update(
            rounds=len(freezes),
            stalled_rounds=sum(1 for f in freezes if f >= 5.0),
            max_freeze_s=round(max(freezes), 1),
            best_s=round(min(elapsed), 1),
            worst_s=round(max(elapsed), 1),
        )
        result.notes.append("longest freeze per round (s): " + ", ".join(f"{f:.1f}" for f in freezes))
        return result

    async def cq_submit_only(self) -> RunResult:
        namespace = f"bench-sub-{secrets.token_hex(3)}"
        tasks = [w1_task(n) for n in range(self.sizes.w1_tasks)]
        async with CQProducer(self.redis_url, namespace, self.sizes.run_timeout_s) as producer:
            rate = await submit_only(producer, tasks)
        return RunResult(
            "W1 submit", "captcha-queue", "submit_many, no worker", {"submit_per_s": round(rate)}
        )

    async def cq_submit_single(self, count: int = 2000) -> RunResult:
        """Single awaited ``submit()`` calls from one process: one round trip each, back to back."""
        namespace = f"bench-sub1-{secrets.token_hex(3)}"
        async with CQProducer(self.redis_url, namespace, self.sizes.run_timeout_s) as producer:
            await producer.submit(w1_task(0))  # connection open, scripts loaded
            started = time.perf_counter()
            for n in range(count):
                await producer.submit(w1_task(n))
            rate = count / (time.perf_counter() - started)
        return RunResult(
            "W1 submit", "captcha-queue", "submit, one awaited at a time", {"submit_per_s": round(rate)}
        )

    async def cq_w2(
        self, processes: int, concurrency: int, limit: int, tasks_n: int, workload: str = "W2"
    ) -> RunResult:
        assert self.simulator is not None
        namespace = f"bench-w2-{secrets.token_hex(3)}"
        tasks = [w2_task(n) for n in range(tasks_n)]
        config = f"{procs_label(processes)} x {concurrency}, limit {limit}"
        result = RunResult(workload, "captcha-queue", config)
        async with (
            self.cq_workers(namespace, processes, concurrency, http=True, limit=limit) as (group, key),
            CQProducer(self.redis_url, namespace, self.sizes.run_timeout_s) as producer,
        ):
            sim_before = self.simulator.stats()
            cpu = self._cpu(group)
            before = command_counts(self.redis_url)
            run = await drive_throughput(producer, tasks, self.sizes.run_timeout_s)
            after = command_counts(self.redis_url)
            result.metrics.update(cpu.stop())
            rss = tree_rss(group)
            sim_after = self.simulator.stats()
        throughput_metrics(result, run, before, after, rss)
        result.metrics.update(processes=processes, concurrency=concurrency)
        if run.seen:
            cpu_ms = 1000 * (result.get("worker_cpu_s") or 0.0) / len(run.seen)
            result.metrics["worker_cpu_ms_per_task"] = round(cpu_ms, 3)
        self._w2_metrics(result, run, min(limit, concurrency * processes), sim_before, sim_after, key)
        return result

    async def cq_latency(self) -> RunResult:
        namespace = f"bench-lat-{secrets.token_hex(3)}"
        s = self.sizes
        capacity = min(s.w2_limit, s.w2_concurrency * s.w2_processes)
        result = RunResult("W2 latency", "captcha-queue", f"{s.latency_load:.0%} of ideal rate")
        async with (
            self.cq_workers(namespace, s.w2_processes, s.w2_concurrency, http=True, limit=s.w2_limit),
            CQProducer(self.redis_url, namespace, s.run_timeout_s) as producer,
        ):
            await self._latency(result, producer, s.latency_tasks, s.latency_load * capacity / s.latency_s)
        overhead_stages(result, producer.woken.values(), s.latency_s)
        return result

    # -- the naive design ---------------------------------------------------------------------------

    async def naive_w1(self, processes: int) -> RunResult:
        tasks = [w1_task(n) for n in range(self.sizes.w1_tasks)]
        return await naive.run_naive_throughput(
            self.redis_url,
            redis_pid=self.redis_pid,
            workload="W1",
            tasks=tasks,
            processes=processes,
            time_scale=self.sizes.time_scale,
            timeout_s=self.sizes.run_timeout_s,
        )

    async def naive_w2(self) -> RunResult:
        assert self.simulator is not None
        s = self.sizes
        per_window = int(naive.PROCESSES * s.naive_window_s / s.latency_s) + naive.PROCESSES * 4
        key = self.new_key()
        sim_before = self.simulator.stats()
        result = await naive.run_naive_throughput(
            self.redis_url,
            workload="W2",
            tasks=[w2_task(n) for n in range(per_window)],
            processes=naive.PROCESSES,
            solver_url=self.simulator.base_url,
            time_scale=s.time_scale,
            window_s=s.naive_window_s,
            timeout_s=s.run_timeout_s,
            api_key=key,
            simulator_pid=self.simulator.proc.pid,
            redis_pid=self.redis_pid,
        )
        sim_after = self.simulator.stats()
        ideal = naive.PROCESSES / s.latency_s
        self._sim_metrics(result, sim_before, sim_after, key, int(result.get("finished_total") or 0))
        result.metrics["ideal_per_s"] = round(ideal, 2)
        return result

    async def naive_latency(self) -> RunResult:
        assert self.simulator is not None
        s = self.sizes
        keys = naive.NaiveKeys(f"naive-lat-{secrets.token_hex(3)}")
        result = RunResult("W2 latency", "naive", f"{s.latency_load:.0%} of its ideal rate")
        group = ProcessGroup()
        client = async_redis(self.redis_url)
        try:
            naive.spawn_workers(
                group, self.redis_url, keys, naive.PROCESSES, self.simulator.base_url, s.time_scale
            )
            await naive.wait_workers_ready(client, naive.PROCESSES)
            producer = naive.NaiveProducer(client, keys, naive.RESULT_POLL_S * s.time_scale)
            rate = s.latency_load * naive.PROCESSES / s.latency_s
            await self._latency(result, producer, s.naive_latency_tasks, rate)
        finally:
            group.stop_all(grace_s=2.0)
            await client.aclose()
        return result

    # -- arq and SAQ --------------------------------------------------------------------------------

    def _peer_producer(self, system: str, queue: str, http: bool) -> ArqProducer | SaqProducer:
        return (
            ArqProducer(self.redis_url, queue, http=http)
            if system == "arq"
            else SaqProducer(self.redis_url, queue, http=http)
        )

    @contextlib.asynccontextmanager
    async def peer_workers(
        self, system: str, queue: str, processes: int, concurrency: int, *, http: bool
    ) -> AsyncIterator[tuple[ProcessGroup, str]]:
        key = self.new_key()
        solver_url = self.simulator.base_url if http and self.simulator else None
        argv = worker_argv(system, queue, concurrency, solver_url, self.sizes.time_scale, concurrency, key)
        group = ProcessGroup()
        try:
            env = child_env({"REDIS_URL": self.redis_url})
            procs = [group.spawn_python(argv, env, capture=True) for _ in range(processes)]
            for proc in procs:
                line = await asyncio.to_thread(read_line, proc, 30.0, f"the {system} worker")
                if line != "ready":
                    raise BenchError(f"the {system} worker said {line!r} instead of ready")
            yield group, key
        finally:
            group.stop_all(grace_s=3.0)

    async def peer_w1(self, system: str, processes: int) -> RunResult:
        queue = f"bench-{system}-{secrets.token_hex(3)}"
        tasks = [w1_task(n) for n in range(self.sizes.w1_tasks)]
        result = RunResult("W1", system, procs_label(processes))
        async with (
            self.peer_workers(system, queue, processes, self.sizes.w1_concurrency, http=False) as (group, _),
            self._peer_producer(system, queue, http=False) as producer,
        ):
            cpu = self._cpu(group)
            before = command_counts(self.redis_url)
            run = await drive_throughput(producer, tasks, self.sizes.run_timeout_s)
            after = command_counts(self.redis_url)
            result.metrics.update(cpu.stop())
            rss = tree_rss(group)
        throughput_metrics(result, run, before, after, rss)
        return result

    async def peer_submit_only(self, system: str) -> RunResult:
        queue = f"bench-{system}-{secrets.token_hex(3)}"
        tasks = [w1_task(n) for n in range(self.sizes.w1_tasks)]
        async with self._peer_producer(system, queue, http=False) as producer:
            rate = await submit_only(producer, tasks)
        how = "enqueue_job, 500 concurrent" if system == "arq" else "enqueue, 500 concurrent"
        return RunResult("W1 submit", system, how, {"submit_per_s": round(rate)})

    async def peer_w2(self, system: str) -> RunResult:
        assert self.simulator is not None
        s = self.sizes
        queue = f"bench-{system}-{secrets.token_hex(3)}"
        tasks = [w2_task(n) for n in range(s.w2_tasks)]
        config = f"{procs_label(s.w2_processes)} x {s.w2_concurrency}"
        result = RunResult("W2", system, config)
        async with (
            self.peer_workers(system, queue, s.w2_processes, s.w2_concurrency, http=True) as (group, key),
            self._peer_producer(system, queue, http=True) as producer,
        ):
            sim_before = self.simulator.stats()
            cpu = self._cpu(group)
            before = command_counts(self.redis_url)
            run = await drive_throughput(producer, tasks, s.run_timeout_s)
            after = command_counts(self.redis_url)
            result.metrics.update(cpu.stop())
            rss = tree_rss(group)
            sim_after = self.simulator.stats()
        throughput_metrics(result, run, before, after, rss)
        capacity = min(s.w2_limit, s.w2_concurrency * s.w2_processes)
        self._w2_metrics(result, run, capacity, sim_before, sim_after, key)
        return result

    async def peer_latency(self, system: str) -> RunResult:
        s = self.sizes
        queue = f"bench-{system}-{secrets.token_hex(3)}"
        capacity = min(s.w2_limit, s.w2_concurrency * s.w2_processes)
        result = RunResult("W2 latency", system, f"{s.latency_load:.0%} of ideal rate")
        async with (
            self.peer_workers(system, queue, s.w2_processes, s.w2_concurrency, http=True),
            self._peer_producer(system, queue, http=True) as producer,
        ):
            await self._latency(result, producer, s.latency_tasks, s.latency_load * capacity / s.latency_s)
        return result

    # -- shared measurement -------------------------------------------------------------------------

    def _cpu(self, group: ProcessGroup) -> CpuMeter:
        pids = [p.pid for p in group.procs if p.poll() is None]
        pids += [child for pid in list(pids) for child in descendants(pid)]
        sim_pid = self.simulator.proc.pid if self.simulator is not None else None
        return CpuMeter(pids, sim_pid, self.redis_pid).start()

    async def _latency(self, result: RunResult, producer: Producer, count: int, rate: float) -> None:
        tasks = [w2_task(n) for n in range(count)]
        latencies = await drive_open_loop(producer, tasks, rate, self.sizes.run_timeout_s)
        overhead_ms = [(e2e - self.sizes.latency_s) * 1000 for e2e in latencies]
        result.metrics.update(
            tasks=count,
            rate_per_s=round(rate, 1),
            e2e_p50_ms=round_or_none(percentile([x * 1000 for x in latencies], 0.5)),
            overhead_p50_ms=round_or_none(percentile(overhead_ms, 0.5)),
            overhead_p99_ms=round_or_none(percentile(overhead_ms, 0.99)),
        )

    def _w2_metrics(
        self,
        result: RunResult,
        run: Throughput,
        capacity: int,
        sim_before: Mapping[str, Any],
        sim_after: Mapping[str, Any],
        key: str,
    ) -> None:
        ideal = capacity / self.sizes.latency_s
        throughput = result.get("throughput_per_s") or 0.0
        result.metrics.update(
            ideal_per_s=round(ideal, 1),
            pct_of_ideal=round(100 * throughput / ideal, 1),
            latency_s=self.sizes.latency_s,
        )
        self._sim_metrics(result, sim_before, sim_after, key, len(run.seen))

    def _sim_metrics(
        self,
        result: RunResult,
        before: Mapping[str, Any],
        after: Mapping[str, Any],
        key: str,
        finished: int,
    ) -> None:
        submits_0, polls_0 = sim_counts(before)
        submits_1, polls_1 = sim_counts(after)
        if finished:
            result.metrics["inphp_per_task"] = round((submits_1 - submits_0) / finished, 2)
            result.metrics["resphp_per_task"] = round((polls_1 - polls_0) / finished, 2)
        result.metrics["max_in_flight"] = sim_max_in_flight(after, key)

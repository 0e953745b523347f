"""GW: the gateway on one process. ``python -m bench`` runs it as workload GW; alone:

    python -m bench.gateway            # full size
    python -m bench.gateway --quick    # small sizes, seconds

Measured (one ``captcha-queue gateway`` process; the load from separate processes, each a minimal
keep-alive HTTP/1.1 client on raw sockets, so the client is not what is measured):

* ``in.php/s``: submissions (GET in.php, reCAPTCHA v2), closed loop, ``connections`` in flight;
* ``res.php/s``: polls of finished tasks (each one HGET of the results hash), closed loop;
* latency at a paced rate (default 1,000 polls/s, open loop): p50/p99 of the round trip as the client
  sees it on loopback, an upper bound of what the gateway adds to a poll;
* GW W2 (with ``python -m bench``, which has the simulator): the W2 solver workload where the producers
  are ``w2_clients`` HTTP clients, each submitting through in.php and polling res.php on the method's
  schedule (first poll after 10 s, then every 5 s, time-scaled), behind them a worker process and the
  simulator. Ideal: clients / L tasks/s (each client has one task at a time, answered at L).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from captcha_queue.gateway import create_key
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.store.connection import make_client

from .harness import ProcessGroup, RunResult, Simulator, child_env, percentile, run_async
from .ports import free_port

__all__ = ["GatewaySizes", "main", "run_gateway_bench", "run_gateway_w2"]

RC = "method=userrecaptcha&googlekey=6Le-bench-site-key&pageurl=https%3A%2F%2Fexample.com%2Flogin"


@dataclass(frozen=True)
class GatewaySizes:
    duration_s: float = 10.0
    connections: int = 64
    load_processes: int = 2
    poll_tasks: int = 2000
    paced_rate: int = 1000
    paced_s: float = 10.0
    w2_clients: int = 1000
    w2_tasks: int = 4000

    @classmethod
    def quick(cls) -> GatewaySizes:
        return cls(
            duration_s=2.0,
            connections=16,
            load_processes=1,
            poll_tasks=200,
            paced_rate=500,
            paced_s=2.0,
            w2_clients=100,
            w2_tasks=300,
        )


# -- the load process ------------------------------------------------------------------------------


class _Conn:
    """One keep-alive HTTP/1.1 connection: GET a path, read the status and the body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    async def get(self, path: str) -> bytes:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
        return await self.reader.readexactly(length)


async def _connect(host: str, port: int) -> _Conn:
    reader, writer = await asyncio.open_connection(host, port)
    return _Conn(reader, writer, f"{host}:{port}")


async def _closed_loop(
    host: str, port: int, paths: list[str], connections: int, duration_s: float
) -> dict[str, Any]:
    conns = [await _connect(host, port) for _ in range(connections)]
    counts = {"ok": 0, "error": 0}
    end = time.monotonic() + duration_s

    async def run(conn: _Conn, offset: int) -> None:
        n = offset
        while time.monotonic() < end:
            body = await conn.get(paths[n % len(paths)])
            counts["error" if b"ERROR" in body else "ok"] += 1
            n += connections

    started = time.monotonic()
    await asyncio.gather(*(run(c, i) for i, c in enumerate(conns)))
    elapsed = time.monotonic() - started
    for conn in conns:
        conn.writer.close()
    return {**counts, "elapsed_s": elapsed}


async def _paced(host: str, port: int, paths: list[str], rate: int, duration_s: float) -> dict[str, Any]:
    """Open loop: request i is due at start + i / rate, sent on a free connection (a pool grows as
    needed); its latency counts from when it was due, so a stall is not hidden by waiting."""
    pool = [await _connect(host, port) for _ in range(8)]
    latencies: list[float] = []
    errors = 0
    total = int(rate * duration_s)
    start = time.monotonic() + 0.05

    async def one(i: int) -> None:
        nonlocal errors
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        conn = pool.pop() if pool else await _connect(host, port)
        body = await conn.get(paths[i % len(paths)])
        latencies.append(time.monotonic() - due)
        errors += b"ERROR" in body
        pool.append(conn)

    await asyncio.gather(*(one(i) for i in range(total)))
    for conn in pool:
        conn.writer.close()
    ms = [x * 1000 for x in latencies]
    return {
        "ok": total - errors,
        "error": errors,
        "p50_ms": percentile(ms, 0.5),
        "p99_ms": percentile(ms, 0.99),
    }


async def _w2_clients(
    host: str, port: int, key: str, clients: int, tasks: int, first_poll_s: float, poll_s: float
) -> dict[str, Any]:
    """``clients`` producers, each one task at a time: submit, first poll, then poll until answered."""
    left = [tasks]
    e2e: list[float] = []
    polls = [0]
    errors = [0]

    async def client(n: int) -> None:
        conn = await _connect(host, port)
        try:
            while left[0] > 0:
                left[0] -= 1
                sent = time.monotonic()
                reply = await conn.get(
                    f"/in.php?key={key}&method=turnstile&sitekey=0x4AAAAAAABench"
                    f"&pageurl=https%3A%2F%2Fbench.example%2Fgw%2F{left[0]}"
                )
                if not reply.startswith(b"OK|"):
                    errors[0] += 1
                    continue
                task_id = reply[3:].decode()
                await asyncio.sleep(first_poll_s)
                while True:
                    polls[0] += 1
                    answer = await conn.get(f"/res.php?key={key}&action=get&id={task_id}")
                    if answer != b"CAPCHA_NOT_READY":
                        break
                    await asyncio.sleep(poll_s)
                if answer.startswith(b"OK|"):
                    e2e.append(time.monotonic() - sent)
                else:
                    errors[0] += 1
        finally:
            conn.writer.close()

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.monotonic() - started
    ms = [x * 1000 for x in e2e]
    return {
        "ok": len(e2e),
        "error": errors[0],
        "elapsed_s": elapsed,
        "polls": polls[0],
        "p50_ms": percentile(ms, 0.5),
        "p99_ms": percentile(ms, 0.99),
    }


def _load_main(args: argparse.Namespace) -> None:
    if args.w2_clients:
        first, every = (float(x) for x in args.w2_schedule.split(","))
        coro = _w2_clients(args.host, args.port, args.key, args.w2_clients, args.w2_tasks, first, every)
        print(json.dumps(run_async(coro)))
        return
    paths = Path(args.paths).read_text().split()
    if args.rate:
        coro = _paced(args.host, args.port, paths, args.rate, args.duration)
    else:
        coro = _closed_loop(args.host, args.port, paths, args.connections, args.duration)
    print(json.dumps(run_async(coro)))


# -- the bench side --------------------------------------------------------------------------------


def _load(
    group: ProcessGroup,
    port: int,
    paths_file: Path,
    *,
    processes: int,
    connections: int,
    duration_s: float,
    rate: int = 0,
) -> list[dict[str, Any]]:
    argv = [sys.executable, "-m", "bench.gateway", "load", "--port", str(port), "--paths", str(paths_file)]
    argv += ["--duration", str(duration_s), "--connections", str(max(1, connections // processes))]
    if rate:
        argv += ["--rate", str(rate)]
    procs = [group.spawn(argv, child_env(), capture=True) for _ in range(processes)]
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=duration_s + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"load process exited {proc.returncode}")
        out.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    return out


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited with code {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp,
        ):
            if resp.status == 200:
                return
        time.sleep(0.05)
    raise RuntimeError("the gateway did not become ready")


async def _finish_all(redis_url: str, namespace: str, count: int) -> list[str]:
    """Claim and complete ``count`` tasks (as a worker would), so polls find results."""
    done: list[str] = []
    async with AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as queue:
        while len(done) < count:
            claims = await queue.claim("bench-gw", min(500, count - len(done)), lease_s=60, block_s=1)
            if not claims:
                break
            for claim in claims:
                await queue.complete(claim, "BENCH-TOKEN-" + claim.task.id)
                done.append(claim.task.id)
    return done


async def run_gateway_bench(redis_url: str, sizes: GatewaySizes) -> list[RunResult]:
    """The three GW measurements against one gateway process on ``redis_url`` (its keys deleted after)."""
    with ProcessGroup() as group, tempfile.TemporaryDirectory() as tmp:
        return await _measure(redis_url, sizes, group, Path(tmp))


async def _measure(
    redis_url: str, sizes: GatewaySizes, group: ProcessGroup, workdir: Path
) -> list[RunResult]:
    namespace = f"bench-gw-{uuid.uuid4().hex[:8]}"
    client = make_client(redis_url)
    try:
        key, _ = await create_key(client, namespace=namespace)
    finally:
        await client.aclose()
    port = free_port()
    argv = [sys.executable, "-m", "captcha_queue", "gateway", "--port", str(port), "--key-cache-s", "60"]
    gateway = group.spawn(argv, child_env({"REDIS_URL": redis_url}), capture=False)
    results: list[RunResult] = []
    config = f"1 process, {sizes.connections} connections, {sizes.load_processes} load process(es)"

    async def load(paths: Path, **options: Any) -> list[dict[str, Any]]:
        return await asyncio.to_thread(_load, group, port, paths, **options)

    closed = {
        "processes": sizes.load_processes,
        "connections": sizes.connections,
        "duration_s": sizes.duration_s,
    }
    try:
        await asyncio.to_thread(_wait_ready, port, gateway)
        submit_file = workdir / "gw-submit.txt"
        submit_file.write_text("\n".join(f"/in.php?key={key}&{RC}{n}" for n in range(1000)))
        runs = await load(submit_file, **closed)
        submitted = sum(r["ok"] for r in runs)
        metrics: dict[str, Any] = {
            "inphp_per_s": round(submitted / max(r["elapsed_s"] for r in runs)),
            "errors": sum(r["error"] for r in runs),
        }
        results.append(RunResult("GW", "captcha-queue", f"in.php, {config}", metrics))
        ids = await _finish_all(redis_url, namespace, min(sizes.poll_tasks, submitted))
        poll_file = workdir / "gw-poll.txt"
        poll_file.write_text("\n".join(f"/res.php?key={key}&action=get&id={i}" for i in ids))
        runs = await load(poll_file, **closed)
        metrics = {
            "resphp_per_s": round(sum(r["ok"] for r in runs) / max(r["elapsed_s"] for r in runs)),
            "errors": sum(r["error"] for r in runs),
        }
        results.append(RunResult("GW", "captcha-queue", f"res.php, {config}", metrics))
        [paced] = await load(
            poll_file, processes=1, connections=8, duration_s=sizes.paced_s, rate=sizes.paced_rate
        )
        metrics = {
            "p50_ms": round(paced["p50_ms"], 2),
            "p99_ms": round(paced["p99_ms"], 2),
            "errors": paced["error"],
        }
        where = f"res.php paced at {sizes.paced_rate:,}/s for {sizes.paced_s:g} s"
        results.append(RunResult("GW", "captcha-queue", where, metrics))
    finally:
        group.stop(gateway, grace_s=5)
        _delete_namespace(redis_url, namespace)
    return results


def _delete_namespace(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match="{" + namespace + "}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


async def run_gateway_w2(
    redis_url: str, simulator_url: str, *, time_scale: float, solve_s: float, sizes: GatewaySizes
) -> RunResult:
    """GW W2: ``w2_clients`` producers through one gateway, one worker process, the simulator (which
    solves the bench's W2 method in ``solve_s`` before scaling)."""
    namespace = f"bench-gww2-{uuid.uuid4().hex[:8]}"
    client = make_client(redis_url)
    try:
        key, _ = await create_key(client, namespace=namespace)
    finally:
        await client.aclose()
    port = free_port()
    with ProcessGroup() as group:
        env = child_env({"REDIS_URL": redis_url, "CAPTCHA_QUEUE_NAMESPACE": namespace})
        gateway = group.spawn(
            [sys.executable, "-m", "captcha_queue", "gateway", "--port", str(port), "--key-cache-s", "60"],
            env,
            capture=False,
        )
        worker_env = {**env, "CAPTCHAAI_URL": simulator_url, "CAPTCHAAI_KEY": uuid.uuid4().hex}
        limit = str(max(sizes.w2_clients, 1))
        worker_argv = [sys.executable, "-m", "captcha_queue", "worker", "--processes", "1"]
        worker_argv += ["--concurrency", limit, "--solver-limit", limit, "--time-scale", str(time_scale)]
        worker = group.spawn(worker_argv, worker_env, capture=False)
        try:
            await asyncio.to_thread(_wait_ready, port, gateway)
            argv = [sys.executable, "-m", "bench.gateway", "load", "--port", str(port), "--key", key]
            argv += ["--w2-clients", str(sizes.w2_clients), "--w2-tasks", str(sizes.w2_tasks)]
            argv += ["--w2-schedule", f"{10 * time_scale},{5 * time_scale}"]
            proc = group.spawn(argv, child_env(), capture=True)
            stdout, _ = await asyncio.to_thread(proc.communicate, None, 600)
            if proc.returncode != 0:
                raise RuntimeError(f"the W2 load process exited {proc.returncode}")
            run = json.loads(stdout.decode().strip().splitlines()[-1])
        finally:
            group.stop(worker, grace_s=10)
            group.stop(gateway, grace_s=5)
            _delete_namespace(redis_url, namespace)
    latency_s = solve_s * time_scale
    ideal = sizes.w2_clients / latency_s
    rate = run["ok"] / run["elapsed_s"]
    metrics = {
        "throughput_per_s": round(rate, 1),
        "ideal_per_s": round(ideal, 1),
        "pct_of_ideal": round(100 * rate / ideal, 1),
        "resphp_per_task": round(run["polls"] / max(1, run["ok"]), 2),
        "e2e_p50_ms": round(run["p50_ms"] or 0, 1),
        "e2e_p99_ms": round(run["p99_ms"] or 0, 1),
        "errors": run["error"],
    }
    config = f"{sizes.w2_clients:,} HTTP clients, {sizes.w2_tasks:,} tasks, L = {latency_s:g} s"
    return RunResult("GW W2", "captcha-queue", config, metrics)


TARGETS = {"inphp_per_s": 2000, "resphp_per_s": 5000, "p99_ms": 5.0}


def format_results(results: Sequence[RunResult]) -> str:
    lines = []
    for r in results:
        figures = ", ".join(f"{k} {v}" for k, v in r.metrics.items())
        lines.append(f"{r.workload} {r.config}: {figures}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    load = sub.add_parser("load", help="(internal) one load process")
    load.add_argument("--host", default="127.0.0.1")
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--paths", default="")
    load.add_argument("--key", default="")
    load.add_argument("--w2-clients", type=int, default=0)
    load.add_argument("--w2-tasks", type=int, default=0)
    load.add_argument("--w2-schedule", default="10,5")
    load.add_argument("--duration", type=float, default=0.0)
    load.add_argument("--connections", type=int, default=16)
    load.add_argument("--rate", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds")
    parser.add_argument("--w2", action="store_true", help="also GW W2 (starts a simulator)")
    args = parser.parse_args(argv)
    if args.command == "load":
        _load_main(args)
        return 0

    from captcha_queue.store.server import EmbeddedRedis, redis_url_from_env

    sizes = GatewaySizes.quick() if args.quick else GatewaySizes()
    with contextlib.ExitStack() as stack:
        url = redis_url_from_env() or stack.enter_context(EmbeddedRedis()).url
        results = run_async(run_gateway_bench(url, sizes))
        if args.w2:
            scale, solve_s = (0.05, 20.0) if args.quick else (0.25, 20.0)
            group = stack.enter_context(ProcessGroup())
            fixed = f"{solve_s - 0.5:g}"
            sim_args = ["--time-scale", str(scale), "--threads", "20000", "--over-capacity", "no_slot"]
            sim_args += ["--latency", f"turnstile={fixed}:{fixed}:{fixed}", "--seed", "7"]
            sim = Simulator.start(group, sim_args, child_env())
            coro = run_gateway_w2(url, sim.base_url, time_scale=scale, solve_s=solve_s, sizes=sizes)
            results.append(run_async(coro))
    print(format_results(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A faithful re-implementation of the naive design captcha-queue replaces, to measure it side by side.

The design, as it was:

* a task is JSON pushed on one Redis list: ``LPUSH`` for high priority, ``RPUSH`` for the rest;
  ids are 8 hex characters (kept here, made unique within a run so the counts add up);
* a worker process takes one task with ``BLPOP`` and handles it synchronously: ``in.php``, then a fixed
  5 s sleep before every ``res.php`` poll, until the answer comes; one task per process, 4 processes;
* the result goes into one hash (``HSET``) plus a ``SETEX`` marker that pretends to give it a TTL;
* a producer waits by polling ``HGET`` once a second.

Both waits (5 s and 1 s) are multiplied by the time scale, like the simulator's solve times. HTTP is
the standard library's ``http.client`` (keep-alive, one connection per process), as the original used a
plain synchronous client. Run a worker with ``REDIS_URL=... python -m bench.naive worker --prefix ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import secrets
import sys
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from .harness import (
    SIMULATOR_KEY,
    CpuMeter,
    ProcessGroup,
    RunResult,
    bounded,
    child_env,
    command_counts,
    command_delta,
    descendants,
    peak_rss_mb,
)

__all__ = ["NaiveKeys", "NaiveProducer", "run_naive_throughput", "worker_main"]

#: The original design's waits, before time scaling.
SOLVER_POLL_S = 5.0
RESULT_POLL_S = 1.0
PROCESSES = 4
RESULT_TTL_S = 3600


@dataclass(frozen=True)
class NaiveKeys:
    prefix: str

    @property
    def tasks(self) -> str:
        return f"{self.prefix}:tasks"

    @property
    def results(self) -> str:
        return f"{self.prefix}:results"

    def marker(self, task_id: str) -> str:
        return f"{self.prefix}:result:{task_id}"


# -- the worker (a synchronous process) ------------------------------------------------------------


class _Http:
    """One keep-alive connection to the solver; reconnects once if the server closed it."""

    def __init__(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, fields: Mapping[str, str]) -> dict[str, Any]:
        body = urllib.parse.urlencode(fields)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request("POST", path, body=body, headers=headers)
                raw = self.conn.getresponse().read()
                decoded: dict[str, Any] = json.loads(raw)
                return decoded
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _solve_http(http_client: _Http, key: str, task: Mapping[str, Any], poll_s: float) -> tuple[str, str]:
    """(status, answer or error code): submit, then sleep-and-poll at the fixed interval."""
    sent = http_client.post("/in.php", {"key": key, "json": "1", "method": task["method"], **task["params"]})
    if sent.get("status") != 1:
        return "error", str(sent.get("request"))
    remote_id = str(sent["request"])
    while True:
        time.sleep(poll_s)
        got = http_client.post("/res.php", {"key": key, "json": "1", "action": "get", "id": remote_id})
        if got.get("status") == 1:
            return "success", str(got.get("request"))
        if got.get("request") not in ("CAPCHA_NOT_READY", "CAPTCHA_NOT_READY"):
            return "error", str(got.get("request"))


def worker_loop(
    redis_url: str, keys: NaiveKeys, solver_url: str | None, api_key: str, time_scale: float
) -> None:
    """One synchronous task at a time, forever (the bench stops it by pid)."""
    client = redis.Redis.from_url(redis_url)
    http_client = _Http(solver_url) if solver_url else None
    poll_s = SOLVER_POLL_S * time_scale
    while True:
        item = client.blpop([keys.tasks], timeout=1)
        if item is None:
            continue
        task = json.loads(item[1])
        started = time.time()
        if http_client is None:
            status, answer = "success", "instant"
        else:
            status, answer = _solve_http(http_client, api_key, task, poll_s)
        result = {"id": task["id"], "status": status, "solution": answer, "started_at": started}
        result["finished_at"] = time.time()
        client.hset(keys.results, task["id"], json.dumps(result))
        client.setex(keys.marker(task["id"]), RESULT_TTL_S, "1")


def worker_main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive worker")
    # From the environment by default: a password in the URL must stay off the command line (ps).
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="default: $REDIS_URL")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--solver-url", default=None, help="in.php/res.php base URL; none = answer at once")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--api-key", default=SIMULATOR_KEY)
    args = parser.parse_args(argv)
    if not args.redis_url:
        parser.error("set REDIS_URL (or --redis-url)")
    try:
        worker_loop(args.redis_url, NaiveKeys(args.prefix), args.solver_url, args.api_key, args.time_scale)
    except KeyboardInterrupt:
        pass


# -- the producer (async, in the bench process) ---------------------------------------------------


class NaiveProducer:
    """Submits with LPUSH/RPUSH and waits by polling HGET once per (scaled) second."""

    def __init__(self, client: aioredis.Redis, keys: NaiveKeys, result_poll_s: float) -> None:
        self.client = client
        self.keys = keys
        self.result_poll_s = result_poll_s
        self._ids: set[str] = set()

    def new_id(self) -> str:
        while True:
            task_id = secrets.token_hex(4)
            if task_id not in self._ids:
                self._ids.add(task_id)
                return task_id

    async def prepare(self, count: int) -> None:
        return None

    async def submit(self, task: tuple[str, Mapping[str, str], str], n: int = 0) -> str:
        return (await self.submit_many([task]))[0]

    async def wait_one(self, task_id: str) -> float:
        """One waiter as the design had it: HGET, sleep a (scaled) second, again."""
        while await self.client.hget(self.keys.results, task_id) is None:  # noqa: ASYNC110 (the design)
            await asyncio.sleep(self.result_poll_s)
        return time.monotonic()

    async def submit_many(self, tasks: Iterable[tuple[str, Mapping[str, str], str]]) -> list[str]:
        """Push (method, params, priority) tasks; pipelined in batches (the list allows it)."""
        ids: list[str] = []
        pipe = self.client.pipeline(transaction=False)
        queued = 0
        for method, params, priority in tasks:
            task_id = self.new_id()
            body = json.dumps({"id": task_id, "method": method, "params": dict(params), "priority": priority})
            if priority == "high":
                pipe.lpush(self.keys.tasks, body)
            else:
                pipe.rpush(self.keys.tasks, body)
            ids.append(task_id)
            queued += 1
            if queued >= 500:
                await pipe.execute()
                queued = 0
        if queued:
            await pipe.execute()
        return ids

    async def wait_all(self, ids: Sequence[str], stop_at: float | None = None) -> dict[str, float]:
        """Poll HGET for every outstanding id each interval; returns id -> monotonic time it was seen.

        With ``stop_at`` (a monotonic deadline) it returns what it has by then instead of everything.
        """
        seen: dict[str, float] = {}
        outstanding = list(ids)
        while outstanding:
            for start in range(0, len(outstanding), 1000):
                chunk = outstanding[start : start + 1000]
                pipe = self.client.pipeline(transaction=False)
                for task_id in chunk:
                    pipe.hget(self.keys.results, task_id)
                found = await pipe.execute()
                now = time.monotonic()
                for task_id, value in zip(chunk, found, strict=True):
                    if value is not None:
                        seen[task_id] = now
            outstanding = [task_id for task_id in outstanding if task_id not in seen]
            if not outstanding or (stop_at is not None and time.monotonic() >= stop_at):
                break
            await asyncio.sleep(self.result_poll_s)
        return seen

    async def take_back(self) -> int:
        """Remove the tasks still waiting in the list; returns how many there were."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.llen(self.keys.tasks)
            pipe.delete(self.keys.tasks)
            length, _ = await pipe.execute()
        return int(length)

    async def finished_at(self, ids: Sequence[str]) -> dict[str, float]:
        """Wall-clock finish time the workers wrote for each id that has a result."""
        values = await self.client.hmget(self.keys.results, list(ids)) if ids else []
        return {tid: float(json.loads(v)["finished_at"]) for tid, v in zip(ids, values, strict=True) if v}


def spawn_workers(
    group: ProcessGroup,
    redis_url: str,
    keys: NaiveKeys,
    processes: int,
    solver_url: str | None,
    time_scale: float,
    api_key: str = SIMULATOR_KEY,
) -> list[int]:
    args = ["-m", "bench.naive", "worker", "--prefix", keys.prefix]
    args += ["--time-scale", str(time_scale), "--api-key", api_key]
    if solver_url:
        args += ["--solver-url", solver_url]
    env = child_env({"REDIS_URL": redis_url})
    return [group.spawn_python(args, env).pid for _ in range(processes)]


async def run_naive_throughput(
    redis_url: str,
    *,
    workload: str,
    tasks: Sequence[tuple[str, Mapping[str, str], str]],
    processes: int = PROCESSES,
    solver_url: str | None = None,
    time_scale: float = 1.0,
    window_s: float | None = None,
    timeout_s: float = 600.0,
    prefix: str | None = None,
    api_key: str = SIMULATOR_KEY,
    simulator_pid: int | None = None,
    redis_pid: int | None = None,
) -> RunResult:
    """Push ``tasks``, run ``processes`` workers, wait for every result (or for ``window_s``).

    With ``window_s`` the run is bounded: throughput counts the results finished inside the window
    (the design is slow enough that the whole set would take minutes).
    """
    keys = NaiveKeys(prefix or f"naive-{secrets.token_hex(3)}")
    config = f"{processes} proc" + ("s" if processes > 1 else "")
    result = RunResult(workload=workload, system="naive", config=config)
    client = aioredis.Redis.from_url(redis_url, max_connections=8)
    producer = NaiveProducer(client, keys, RESULT_POLL_S * time_scale)
    group = ProcessGroup()
    try:
        workers = spawn_workers(group, redis_url, keys, processes, solver_url, time_scale, api_key)
        await wait_workers_ready(client, processes)
        cpu = CpuMeter(workers, simulator_pid, redis_pid).start()
        before = command_counts(redis_url)
        started = time.monotonic()
        wall_started = time.time()
        ids = await producer.submit_many(tasks)
        submitted_s = time.monotonic() - started
        stop_at = started + window_s if window_s else None
        seen = await bounded(producer.wait_all(ids, stop_at), timeout_s, "the naive run")
        elapsed = time.monotonic() - started
        if window_s:
            # Take back what no worker started, and let the ones in flight finish, so the solver's
            # counts cover whole tasks only.
            left = await producer.take_back()
            await bounded(producer.wait_all(ids[: len(ids) - left]), timeout_s, "the naive drain")
        result.metrics.update(cpu.stop())
        rss = peak_rss_mb([*workers, *[c for w in workers for c in descendants(w)]])
        after = command_counts(redis_url)
        done = len(seen)
        if window_s:
            # The rate at which results came in the window: done / (last finish in the window - start).
            finish = await producer.finished_at(list(seen))
            inside = sorted(t - wall_started for t in finish.values() if t - wall_started <= window_s)
            done = len(inside)
            elapsed = inside[-1] if inside else window_s
            result.notes.append(
                f"bounded run: {done} of {len(ids)} tasks finished in a {window_s:.0f} s window"
            )
        cmds = sum(command_delta(before, after).values())
        result.metrics.update(
            tasks=len(ids),
            completed=done,
            finished_total=await client.hlen(keys.results),
            elapsed_s=round(elapsed, 3),
            throughput_per_s=round(done / elapsed, 2) if elapsed else None,
            submit_per_s=round(len(ids) / submitted_s, 1) if submitted_s else None,
            redis_cmds_per_task=round(cmds / max(1, len(seen)), 2),
            peak_rss_mb=round(max(rss.values()), 1) if rss else None,
            processes=processes,
        )
    finally:
        group.stop_all(grace_s=2.0)
        await client.delete(keys.tasks, keys.results)
        await client.aclose()
    return result


async def wait_workers_ready(client: aioredis.Redis, processes: int, timeout_s: float = 20.0) -> None:
    """Until ``processes`` clients sit in BLPOP (the workers imported and connected)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        clients = await client.client_list()
        if sum(1 for c in clients if c.get("cmd") == "blpop") >= processes:
            return
        await asyncio.sleep(0.05)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker_main(sys.argv[2:])
    else:
        sys.exit("usage: REDIS_URL=URL python -m bench.naive worker --prefix P [--solver-url URL]")

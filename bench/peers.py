"""arq and SAQ running the same W1 and W2 jobs as captcha-queue, with their best settings for I/O work.

* W1 job: return at once (the queue's own cost).
* W2 job: submit to the simulator, then poll ``res.php`` with ``asyncio.sleep`` at the method's first-poll
  delay and interval, through ``captcha_queue.solvers.captchaai.CaptchaAISolver`` (one per worker
  process, shared by its jobs), so every system uses the same HTTP client.

Settings (stated in the report, :data:`ARQ_SETTINGS` / :data:`SAQ_SETTINGS`): uvloop when installed (as
captcha-queue's worker uses it), as many jobs in flight per
process as captcha-queue gets; arq polls its queue every 10 ms (default 500 ms) and reads as many ids per
poll as it has free slots; SAQ blocks in ``BLMOVE`` per concurrency slot, with a job timeout raised from
its 10 s default. Both run on the bench's redis-py (outside arq's declared ``redis<6`` pin; their test
jobs pass on it), so every system uses the same Redis client library.

Waiting for results uses each queue's own mechanism: SAQ's pub/sub ``listen``; arq has no push, so the
producer polls the result keys of every outstanding job in one pipelined round trip every 20 ms.
Workers run as ``python -m bench.peers arq-worker|saq-worker ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from .harness import SIMULATOR_KEY, run_async

__all__ = ["ARQ_SETTINGS", "SAQ_SETTINGS", "ArqProducer", "SaqProducer", "worker_argv"]

Task = tuple[str, Mapping[str, str], str]  # (method, params, priority)

ARQ_POLL_DELAY_S = 0.01
ARQ_RESULT_POLL_S = 0.02
ARQ_MAX_CONNECTIONS = 10_000
SAQ_JOB_TIMEOUT_S = 600
SAQ_MAX_CONCURRENT_OPS = 100

ARQ_SETTINGS = (
    "uvloop event loop (when installed, as for captcha-queue), "
    f"max_jobs = per-process concurrency, queue_read_limit = max_jobs, poll_delay = {ARQ_POLL_DELAY_S} s "
    "(default 0.5 s), job_timeout = 600 s, keep_result 3600 s, pickle (default); producer enqueues "
    f"concurrently and polls result keys every {ARQ_RESULT_POLL_S * 1000:.0f} ms (arq has no push)"
)
SAQ_SETTINGS = (
    "uvloop event loop (when installed), Worker(concurrency = per-process concurrency, "
    "dequeue_timeout = 0: one blocking BLMOVE per slot), "
    f"job timeout = {SAQ_JOB_TIMEOUT_S} s (default 10 s), max_concurrent_ops = {SAQ_MAX_CONCURRENT_OPS} "
    "(default 20), Redis pool sized to concurrency; producer enqueues concurrently and waits with "
    "Queue.listen (pub/sub)"
)


# -- the jobs ---------------------------------------------------------------------------------------


async def _solve(solver: Any, method: str, params: Mapping[str, str]) -> str:
    """The W2 job body: submit, sleep to the first poll, poll at the interval until answered."""
    remote_id = await solver.submit(method, params)
    first_s, interval_s = solver.poll_schedule(method, params)
    await asyncio.sleep(first_s)
    while True:
        solution = await solver.poll(remote_id, method, params)
        if solution is not None:
            return str(solution.text)
        await asyncio.sleep(interval_s)


def _make_solver(solver_url: str, api_key: str, time_scale: float, connections: int) -> Any:
    from captcha_queue.solvers.captchaai import CaptchaAISolver

    return CaptchaAISolver(api_key, solver_url, time_scale=time_scale, max_connections=connections)


async def arq_w1_job(ctx: dict[str, Any], n: int) -> str:
    return "ok"


async def arq_w2_job(ctx: dict[str, Any], method: str, params: dict[str, str]) -> str:
    return await _solve(ctx["solver"], method, params)


async def saq_w1_job(ctx: Any, *, n: int) -> str:
    return "ok"


async def saq_w2_job(ctx: Any, *, method: str, params: dict[str, str]) -> str:
    return await _solve(_SAQ_STATE["solver"], method, params)


_SAQ_STATE: dict[str, Any] = {}


# -- the workers ------------------------------------------------------------------------------------


def _arq_settings(redis_url: str) -> Any:
    """arq's settings; the pool is uncapped as it is on the redis-py arq pins (redis-py 8 caps it at 100)."""
    from arq.connections import RedisSettings

    settings = RedisSettings.from_dsn(redis_url)
    settings.max_connections = ARQ_MAX_CONNECTIONS
    return settings


async def _run_arq(args: argparse.Namespace) -> None:
    from arq.worker import Worker

    async def startup(ctx: dict[str, Any]) -> None:
        if args.solver_url:
            ctx["solver"] = _make_solver(args.solver_url, args.api_key, args.time_scale, args.connections)
        print("ready", flush=True)

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "solver" in ctx:
            await ctx["solver"].aclose()

    worker = Worker(
        functions=[arq_w1_job, arq_w2_job],
        queue_name=args.queue,
        redis_settings=_arq_settings(args.redis_url),
        max_jobs=args.concurrency,
        queue_read_limit=args.concurrency,
        poll_delay=ARQ_POLL_DELAY_S,
        job_timeout=600,
        keep_result=3600,
        on_startup=startup,
        on_shutdown=shutdown,
        handle_signals=True,
    )
    try:
        await worker.async_run()  # sets main_task, which arq's SIGTERM handler cancels
    except asyncio.CancelledError:
        pass
    finally:
        await worker.close()


async def _run_saq(args: argparse.Namespace) -> None:
    from saq import Worker
    from saq.queue.redis import RedisQueue

    client: aioredis.Redis = aioredis.Redis.from_url(args.redis_url, max_connections=args.concurrency + 64)
    queue = RedisQueue(client, name=args.queue, max_concurrent_ops=SAQ_MAX_CONCURRENT_OPS)

    async def startup(ctx: Any) -> None:
        if args.solver_url:
            _SAQ_STATE["solver"] = _make_solver(
                args.solver_url, args.api_key, args.time_scale, args.connections
            )
        print("ready", flush=True)

    async def shutdown(ctx: Any) -> None:
        solver = _SAQ_STATE.pop("solver", None)
        if solver is not None:
            await solver.aclose()

    worker = Worker(
        queue,
        [("saq_w1_job", saq_w1_job), ("saq_w2_job", saq_w2_job)],
        concurrency=args.concurrency,
        startup=startup,
        shutdown=shutdown,
        dequeue_timeout=0,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(worker.start())
    await stop.wait()
    await worker.stop()
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await runner
    await queue.disconnect()


def worker_argv(
    system: str,
    queue: str,
    concurrency: int,
    solver_url: str | None,
    time_scale: float,
    connections: int,
    api_key: str = SIMULATOR_KEY,
) -> list[str]:
    # The Redis URL (with its password) goes in the environment: REDIS_URL.
    argv = ["-m", "bench.peers", f"{system}-worker", "--queue", queue]
    argv += ["--api-key", api_key]
    argv += ["--concurrency", str(concurrency), "--time-scale", str(time_scale)]
    argv += ["--connections", str(connections)]
    if solver_url:
        argv += ["--solver-url", solver_url]
    return argv


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("role", choices=["arq-worker", "saq-worker"])
    # From the environment by default: a password in the URL must stay off the command line (ps).
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="default: $REDIS_URL")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--solver-url", default=None)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--api-key", default=SIMULATOR_KEY)
    args = parser.parse_args(argv)
    if not args.redis_url:
        parser.error("set REDIS_URL (or --redis-url)")
    runner = _run_arq if args.role == "arq-worker" else _run_saq
    with contextlib.suppress(KeyboardInterrupt):
        run_async(runner(args))


# -- the producers ----------------------------------------------------------------------------------


class ArqProducer:
    """Enqueues arq jobs; learns of results by polling their result keys in one pipeline."""

    def __init__(self, redis_url: str, queue: str, *, http: bool) -> None:
        self.redis_url = redis_url
        self.queue = queue
        self.http = http
        self.seen: dict[str, float] = {}
        self._pool: Any = None
        self._waiting: set[str] = set()
        self._events: dict[str, asyncio.Event] = {}
        self._poller: asyncio.Task[None] | None = None
        self._closing = False

    async def __aenter__(self) -> ArqProducer:
        from arq.connections import create_pool

        self._pool = await create_pool(_arq_settings(self.redis_url), default_queue_name=self.queue, retry=0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        if self._poller is not None:
            # The loop also checks _closing: a cancel landing inside redis-py may be swallowed.
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
                await asyncio.wait_for(self._poller, 5.0)
        if self._pool is not None:
            await self._pool.aclose()

    def _start_polling(self) -> None:
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_results())

    async def prepare(self, count: int) -> None:
        return None

    async def submit(self, task: Task, n: int = 0) -> str:
        job_id = uuid.uuid4().hex
        self._waiting.add(job_id)
        method, params, _ = task
        if self.http:
            await self._pool.enqueue_job("arq_w2_job", method, dict(params), _job_id=job_id)
        else:
            await self._pool.enqueue_job("arq_w1_job", n, _job_id=job_id)
        return job_id

    async def submit_many(self, tasks: Sequence[Task]) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(tasks), 500):
            chunk = tasks[start : start + 500]
            ids += await asyncio.gather(*(self.submit(t, start + i) for i, t in enumerate(chunk)))
        return ids

    async def _poll_results(self) -> None:
        from arq.constants import result_key_prefix

        while not self._closing:
            waiting = list(self._waiting)
            for start in range(0, len(waiting), 2000):
                chunk = waiting[start : start + 2000]
                pipe = self._pool.pipeline(transaction=False)
                for job_id in chunk:
                    pipe.exists(result_key_prefix + job_id)
                found = await pipe.execute()
                now = time.monotonic()
                for job_id, exists in zip(chunk, found, strict=True):
                    if exists:
                        self.seen[job_id] = now
                        self._waiting.discard(job_id)
                        self._events.setdefault(job_id, asyncio.Event()).set()
            await asyncio.sleep(ARQ_RESULT_POLL_S)

    async def wait_all(self, ids: Sequence[str]) -> dict[str, float]:
        for task_id in ids:
            await self.wait_one(task_id)
        return {i: self.seen[i] for i in ids}

    async def wait_one(self, task_id: str) -> float:
        self._start_polling()
        if task_id not in self.seen:
            await self._events.setdefault(task_id, asyncio.Event()).wait()
        return self.seen[task_id]


class SaqProducer:
    """Enqueues SAQ jobs with keys chosen up front, and waits through SAQ's pub/sub ``listen``."""

    def __init__(self, redis_url: str, queue: str, *, http: bool) -> None:
        self.redis_url = redis_url
        self.queue_name = queue
        self.http = http
        self.seen: dict[str, float] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._keys: list[str] = []
        self._client: aioredis.Redis | None = None
        self._queue: Any = None
        self._listener: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SaqProducer:
        from saq.queue.redis import RedisQueue

        self._client = aioredis.Redis.from_url(self.redis_url, max_connections=SAQ_MAX_CONCURRENT_OPS + 16)
        self._queue = RedisQueue(
            self._client, name=self.queue_name, max_concurrent_ops=SAQ_MAX_CONCURRENT_OPS
        )
        await self._queue.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
                await asyncio.wait_for(self._listener, 5.0)
        if self._queue is not None:
            await self._queue.disconnect()
        if self._client is not None:
            await self._client.aclose()

    async def prepare(self, count: int) -> None:
        """Choose the job keys and subscribe before anything is enqueued, so no completion is missed."""
        from saq.job import TERMINAL_STATUSES

        self._keys = [uuid.uuid4().hex for _ in range(count)]
        self._events = {key: asyncio.Event() for key in self._keys}

        def on_update(key: str, status: Any) -> bool:
            if status in TERMINAL_STATUSES and key not in self.seen:
                self.seen[key] = time.monotonic()
                event = self._events.get(key)
                if event is not None:
                    event.set()
            return len(self.seen) >= len(self._events)

        self._listener = asyncio.create_task(self._queue.listen(list(self._keys), on_update, timeout=None))
        assert self._client is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if int(await self._client.pubsub_numpat()) >= 1:
                return
            await asyncio.sleep(0.01)

    async def submit(self, task: Task, n: int = 0) -> str:
        key = self._keys[n]
        method, params, _ = task
        if self.http:
            await self._queue.enqueue(
                "saq_w2_job", key=key, timeout=SAQ_JOB_TIMEOUT_S, method=method, params=dict(params)
            )
        else:
            await self._queue.enqueue("saq_w1_job", key=key, timeout=SAQ_JOB_TIMEOUT_S, n=n)
        return key

    async def submit_many(self, tasks: Sequence[Task]) -> list[str]:
        for start in range(0, len(tasks), 500):
            end = min(len(tasks), start + 500)
            await asyncio.gather(*(self.submit(tasks[i], i) for i in range(start, end)))
        return self._keys[: len(tasks)]

    async def wait_all(self, ids: Sequence[str]) -> dict[str, float]:
        for task_id in ids:
            await self._events[task_id].wait()
        return {i: self.seen[i] for i in ids}

    async def wait_one(self, task_id: str) -> float:
        await self._events[task_id].wait()
        return self.seen[task_id]


if __name__ == "__main__":
    main(sys.argv[1:])

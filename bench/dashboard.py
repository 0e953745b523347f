"""DASH: the dashboard's live event feed under many open browsers (``python -m bench --only DASH``).

A ``captcha-queue dashboard`` subprocess; ``clients`` Server-Sent-Events clients on its
``/events/stream``; then ``events`` tasks completed one by one. Measured: how many connections the
dashboard holds on the events stream (CLIENT LIST, by the feed's connection name: the design says
one, however many browsers), every delivery to every client (none may be lost), and the fan-out
latency from the moment ``complete`` is called to each client reading the row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid

import aiohttp

from captcha_queue import AsyncCaptchaQueue
from captcha_queue.dashboard import PAGE_CLIENT_NAME, READER_NAME
from captcha_queue.models import Claim

from .harness import RunResult, child_env, percentile

__all__ = ["DASH_CLIENTS", "DASH_EVENTS", "run_dashboard"]

DASH_CLIENTS = 50
DASH_EVENTS = 200
_PARAMS = {"sitekey": "0x4AAAAAAAC3DHQFLr1GavRN", "pageurl": "https://example.test/dash"}


async def _first_line(proc: asyncio.subprocess.Process, timeout_s: float) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
    if not line:
        raise RuntimeError(f"the dashboard exited ({proc.returncode}) before printing its URL")
    return line.decode().strip()


async def _client(
    http: aiohttp.ClientSession,
    url: str,
    connected: asyncio.Event,
    count: list[int],
    total: int,
    seen: dict[str, float],
    want: int,
) -> None:
    """One browser: read rows until ``want`` events arrived; note when each task's row came."""
    async with http.get(url) as reply:
        reply.raise_for_status()
        count[0] += 1
        if count[0] == total:
            connected.set()
        async for line in reply.content:
            if not line.startswith(b"data: "):
                continue
            at = time.perf_counter()
            text = line.decode()
            start = text.find("<td>", text.find("</td>") + 5) + 4  # the second cell: the task id
            seen[text[start : text.find("</td>", start)]] = at
            if len(seen) >= want:
                return


async def run_dashboard(redis_url: str, clients: int, events: int, timeout_s: float) -> RunResult:
    namespace = f"bench-dash-{uuid.uuid4().hex[:8]}"
    env = child_env({"REDIS_URL": redis_url, "CAPTCHA_QUEUE_NAMESPACE": namespace})
    argv = [sys.executable, "-m", "captcha_queue", "dashboard", "--port", "0"]
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        base = await _first_line(proc, timeout_s)
        async with (
            AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as q,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        ):
            connected, count = asyncio.Event(), [0]
            seen: list[dict[str, float]] = [{} for _ in range(clients)]
            readers = [
                asyncio.create_task(
                    _client(http, base + "/events/stream", connected, count, clients, seen[i], events)
                )
                for i in range(clients)
            ]
            try:
                await asyncio.wait_for(connected.wait(), timeout_s)
                names = [c.get("name") for c in await q.client.client_list()]
                redis_readers = names.count(READER_NAME)
                page_connections = names.count(PAGE_CLIENT_NAME)
                await asyncio.sleep(0.5)  # the feed's XREAD is in place
                sent: dict[str, float] = {}
                ids = await q.submit_many([{"method": "turnstile", "params": _PARAMS}] * events)
                claims: list[Claim] = []
                while len(claims) < events:
                    claims += await q.claim("bench-dash", events - len(claims), lease_s=60.0, block_s=0.5)
                for claim in claims:
                    sent[claim.task.id] = time.perf_counter()
                    await q.complete(claim, "token")
                    await asyncio.sleep(0.005)  # an open loop, not one burst
                await asyncio.wait(readers, timeout=timeout_s)
            finally:
                for task in readers:
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*readers, return_exceptions=True)
            keys = [key async for key in q.client.scan_iter(match="{" + namespace + "}*")]
            if keys:
                await q.client.delete(*keys)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)  # by its pid: it stops its server and closes Redis
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
    latencies = [(at - sent[task_id]) * 1000 for s in seen for task_id, at in s.items() if task_id in sent]
    deliveries = len(latencies)
    result = RunResult(
        "DASH",
        "captcha-queue",
        f"{clients} clients",
        {
            "clients": clients,
            "events": len(ids),
            "redis_readers": redis_readers,
            "page_connections": page_connections,
            "deliveries": deliveries,
            "lost": clients * events - deliveries,
            "fanout_p50_ms": round(percentile(latencies, 0.5) or 0, 2),
            "fanout_p99_ms": round(percentile(latencies, 0.99) or 0, 2),
            "fanout_max_ms": round(max(latencies, default=0), 2),
        },
    )
    if redis_readers != 1:
        result.error = f"{redis_readers} connections read the events stream, not 1"
    elif deliveries != clients * events:
        result.error = f"{clients * events - deliveries} deliveries lost"
    return result

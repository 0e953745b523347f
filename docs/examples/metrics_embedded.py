"""Prometheus metrics for a worker embedded in your own program (an InstantSolver here: no network)."""

import asyncio
import os
import urllib.request

from captcha_queue import AsyncCaptchaQueue, TaskSpec
from captcha_queue.solvers import InstantSolver
from captcha_queue.worker import Worker
from captcha_queue.worker.metrics import WorkerMetrics

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = os.environ.get("CAPTCHA_QUEUE_NAMESPACE", "captcha")


def scrape(url: str) -> str:  # what Prometheus does
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def main() -> None:
    metrics = WorkerMetrics()  # its own registry: nothing touches prometheus_client's global one
    async with (
        AsyncCaptchaQueue.from_url(REDIS_URL, namespace=NAMESPACE) as queue,
        InstantSolver() as solver,
    ):
        with metrics.serve(0) as server:  # /metrics on 127.0.0.1; port 0: a free one (e.g. 9464)
            worker = Worker(queue, solver, events=metrics)
            running = asyncio.create_task(worker.run())
            refresher = asyncio.create_task(metrics.run_refresher(queue, interval_s=5.0))  # queue gauges

            ids = await queue.submit_many([TaskSpec("image", {"body": "iVBORw0KGgo..."})] * 3)
            assert all([await queue.wait_result(task_id, timeout_s=30) for task_id in ids])
            worker.stop()  # a graceful shutdown: every finish is counted once run() returns
            await running
            refresher.cancel()
            text = await asyncio.to_thread(scrape, server.url)
    for line in text.splitlines():
        if line.startswith("captcha_queue_tasks_finished_total"):
            print(line)


asyncio.run(main())

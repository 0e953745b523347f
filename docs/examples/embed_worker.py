"""A worker inside your own program. The solver simulator stands in for CaptchaAI here (in process, time
scaled 1000x); against the real service, drop `run_simulator` and use `CaptchaAISolver(api_key)`."""

import asyncio
import os

from captcha_queue import AsyncCaptchaQueue, TaskSpec
from captcha_queue.simulator import SimulatorConfig, run_simulator
from captcha_queue.solvers import CaptchaAISolver
from captcha_queue.worker import Worker, WorkerConfig

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = os.environ.get("CAPTCHA_QUEUE_NAMESPACE", "captcha")
SCALE = 0.001  # the simulator's solve times and the worker's poll intervals, both scaled
API_KEY = "k" * 32  # the simulator takes any 32-character key


async def main() -> None:
    async with (
        run_simulator(SimulatorConfig(time_scale=SCALE, threads=3)) as sim,
        AsyncCaptchaQueue.from_url(REDIS_URL, namespace=NAMESPACE) as queue,
        CaptchaAISolver(API_KEY, sim.base_url, time_scale=SCALE) as solver,
    ):
        worker = Worker(queue, solver, WorkerConfig(concurrency=50, time_scale=SCALE))
        running = asyncio.create_task(worker.run())

        task = TaskSpec("recaptcha_v2", {"googlekey": "6Le-wHgU...", "pageurl": "https://example.com"})
        ids = await queue.submit_many([task] * 10)
        statuses = [result.status async for result in queue.as_completed(ids, timeout_s=60)]
        print(len(statuses), "results:", set(statuses))

        worker.stop()  # a graceful shutdown: no new claims, in-flight solves finish
        await running
        account = sim.account(API_KEY)  # its entry in the /stats document
        print("most solves at once:", account["max_in_flight"], "of", account["threads"])


asyncio.run(main())

"""Refunds: a result says which account solved it; q.report(...) sends one verdict there, through a
worker of that account (the producer holds no solver key). Runs against the simulator in process."""

import asyncio
import os

from captcha_queue import AsyncCaptchaQueue
from captcha_queue.simulator import SimulatorConfig, run_simulator
from captcha_queue.solvers import CaptchaAISolver
from captcha_queue.worker import Worker, WorkerConfig

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = os.environ.get("CAPTCHA_QUEUE_NAMESPACE", "captcha")
KEY = "k" * 32  # any 32-character key is a simulator account


async def main() -> None:
    async with (
        run_simulator(SimulatorConfig(time_scale=0.01, seed=1)) as sim,
        CaptchaAISolver(KEY, sim.base_url, account="main", time_scale=0.01) as solver,
        AsyncCaptchaQueue.from_url(REDIS_URL, namespace=NAMESPACE) as q,
    ):
        worker = Worker(q, solver, WorkerConfig(lease_s=3.0, time_scale=0.01))
        running = asyncio.create_task(worker.run())

        task_id = await q.submit("turnstile", {"sitekey": "0x4AAAAAAA", "pageurl": "https://example.com"})
        result = await q.wait_result(task_id, timeout_s=30)
        assert result is not None
        assert result.account is not None
        print(
            "solved by:", result.provider, result.account.split("/")[0], "remote id", bool(result.remote_id)
        )

        # The token did not work on the site: claim a refund. Once per task.
        print("reported:", await q.report(task_id, correct=False))
        print("again:", await q.report(task_id, correct=True))

        # A worker of that account sends it within a renew period (the simulator has no event to await).
        while not sim.stats()["reports"]:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        print("the service heard:", sim.stats()["reports"])

        worker.stop()
        await running


asyncio.run(main())

"""The async producer API, with a stand-in for a worker so the example runs on its own."""

import asyncio
import os

from captcha_queue import AsyncCaptchaQueue, Solution

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = os.environ.get("CAPTCHA_QUEUE_NAMESPACE", "captcha")


async def main() -> None:
    async with AsyncCaptchaQueue.from_url(REDIS_URL, namespace=NAMESPACE) as q:
        task_id = await q.submit(
            "userrecaptcha",
            {"googlekey": "6Le-wHgUAAAAA...", "pageurl": "https://example.com/login"},
            priority="high",
            idempotency_key="login-42",
            metadata={"user": 42},
        )
        # Stand-in for a worker (normally `captcha-queue worker`): claim, solve, complete.
        [claim] = await q.claim("demo-worker", 1, lease_s=30)
        await q.complete(claim, Solution(text="03AGdBq24..."))

        result = await q.wait_result(task_id, timeout_s=120)
        assert result is not None
        print(result.status, result.solution, result.queue_wait_s, result.metadata)


asyncio.run(main())

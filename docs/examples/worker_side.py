"""The worker side of the queue by hand: what `captcha-queue worker` does with every task it holds."""

import asyncio
import os

from captcha_queue import AsyncCaptchaQueue, LeaseLost, Solution

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = os.environ.get("CAPTCHA_QUEUE_NAMESPACE", "captcha")


async def main() -> None:
    async with AsyncCaptchaQueue.from_url(REDIS_URL, namespace=NAMESPACE) as q:
        await q.submit("turnstile", {"sitekey": "0x4AAAAAAA...", "pageurl": "https://example.com"})
        await q.submit("base64", {"body": "iVBORw0KGgo..."})

        claims = await q.claim("worker-1", 2, lease_s=30.0, block_s=5.0)  # blocks in Redis while empty
        outcome = await q.renew(claims, lease_s=30.0)  # one call renews every lease held
        print("renewed", len(outcome.renewed), "lost", outcome.lost, "cancelled", outcome.cancelled)

        first, second = claims
        first = await q.record_remote(first, "7311424001")  # a new owner would resume this solve
        print("complete:", (await q.complete(first, Solution(text="0.AbCd..."))).status)

        # A transient error with attempts left: a retry is scheduled (None), the remote id cleared.
        print("retry:", await q.fail(second, "ERROR_NO_SLOT_AVAILABLE", retry_in_s=0.1))
        try:
            await q.complete(second, "late")  # that lease is over: fenced, nothing written
        except LeaseLost as exc:
            print("fenced:", type(exc).__name__)

        [again] = await q.claim("worker-1", 1, block_s=5.0)  # wakes when the retry falls due
        await q.release(again)  # back to the head of its priority, no attempt consumed
        [again] = await q.claim("worker-1", 1, block_s=5.0)
        final = await q.fail(again, "ERROR_CAPTCHA_UNSOLVABLE", "no answer")  # no retry_in_s: final
        assert final is not None
        print("final:", final.status, final.error_code, "attempt", again.attempt)
        print("reaped:", await q.reap())  # periodic maintenance any worker may call


asyncio.run(main())

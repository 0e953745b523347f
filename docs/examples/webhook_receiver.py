"""Receiving webhooks: check the signature, deduplicate on the delivery id, answer 2xx.

Run as a script, it makes one round trip on loopback: a receiver, a task submitted with a pingback,
its result written (as a worker would), and a deliverer sending it. REDIS_URL and
CAPTCHA_QUEUE_NAMESPACE say where the queue lives.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import socket
import time
from collections.abc import Mapping

from aiohttp import web

from captcha_queue import AsyncCaptchaQueue
from captcha_queue.webhooks import WebhookDeliverer, WebhookSettings


def verify(
    secret: str,
    headers: Mapping[str, str],
    payload: bytes,
    *,
    tolerance_s: float = 300.0,
    now_s: float | None = None,
) -> bool:
    """True when a delivery was signed with ``secret`` less than ``tolerance_s`` ago. ``payload`` is the
    body of a POST, or the raw query string of a GET (what follows the "?"), exactly as received."""
    timestamp = headers.get("X-Captcha-Queue-Timestamp", "")
    signature = headers.get("X-Captcha-Queue-Signature", "")
    if not timestamp.isdigit():
        return False
    if abs((time.time() if now_s is None else now_s) - int(timestamp)) > tolerance_s:
        return False  # too old (or from the future): a replayed request
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + payload, hashlib.sha256)
    return hmac.compare_digest("sha256=" + mac.hexdigest(), signature)


def receiver(secret: str, answers: dict[str, str], arrived: asyncio.Event) -> web.Application:
    """A receiver: ``answers`` maps each task id to its code (the answer, or an error code); ``arrived``
    is set at each new one."""
    seen: set[str] = set()

    async def hook(request: web.Request) -> web.Response:
        if request.method == "POST":
            payload = await request.read()
        else:
            payload = request.rel_url.raw_query_string.encode("ascii")
        if not verify(secret, request.headers, payload):
            return web.Response(status=401, text="bad signature")
        delivery = request.headers["X-Captcha-Queue-Delivery"]
        if delivery not in seen:  # at least once: a repeat is answered 2xx and not handled again
            seen.add(delivery)
            fields = await request.post() if request.method == "POST" else request.query
            answers[str(fields["id"])] = str(fields["code"])
            arrived.set()
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_route("*", "/captcha-hook", hook)
    return app


async def main() -> None:
    secret = "change-me-to-a-long-random-secret"
    answers: dict[str, str] = {}
    arrived = asyncio.Event()
    with socket.socket() as sock:  # a free loopback port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    runner = web.AppRunner(receiver(secret, answers, arrived))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    namespace = os.environ.get("CAPTCHA_QUEUE_NAMESPACE", "captcha")
    # Loopback is a private target: refused unless allowed, by the producer and by the deliverer.
    settings = WebhookSettings(secret=secret, allow_private_targets=True)
    try:
        async with (
            AsyncCaptchaQueue.from_url(redis_url, namespace=namespace, allow_private_targets=True) as q,
            WebhookDeliverer.from_url(redis_url, namespace=namespace, settings=settings),
        ):
            task_id = await q.submit(
                "userrecaptcha",
                {"googlekey": "6Le-example", "pageurl": "https://example.com/login"},
                pingback=f"http://127.0.0.1:{port}/captcha-hook",
            )
            (claim,) = await q.claim("example-worker", 1, block_s=5)  # what a worker does
            await q.complete(claim, "03AGdBq24...")
            await asyncio.wait_for(arrived.wait(), timeout=30)
            print(f"received {answers[task_id]} (signature verified)")
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())

"""The blocking twin: a batch, results as they complete, and the queue's stats."""

import os

from captcha_queue import CaptchaQueue, TaskSpec

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = os.environ.get("CAPTCHA_QUEUE_NAMESPACE", "captcha")

with CaptchaQueue.from_url(REDIS_URL, namespace=NAMESPACE) as q:
    ids = q.submit_many(
        [TaskSpec("turnstile", {"sitekey": "0x4AAAAAAA...", "pageurl": "https://example.com"})] * 3
        + [{"method": "base64", "params": {"body": "iVBORw0KGgo..."}, "priority": "low"}]
    )
    for claim in q.claim("demo-worker", 4):  # stand-in for a worker
        q.complete(claim, "solved")
    for result in q.as_completed(ids, timeout_s=60):
        print(result.id, result.status, result.solution)
    print(q.stats())

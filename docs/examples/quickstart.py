"""Submit one task and wait for its result by push (a worker fleet does the solving)."""

import os

from captcha_queue import CaptchaQueue

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = os.environ.get("CAPTCHA_QUEUE_NAMESPACE", "captcha")

with CaptchaQueue.from_url(REDIS_URL, namespace=NAMESPACE) as q:  # or AsyncCaptchaQueue
    task_id = q.submit("userrecaptcha", {"googlekey": "6Le-wHgU...", "pageurl": "https://example.com"})
    result = q.wait_result(task_id, timeout_s=120)  # push, never polling
    assert result is not None, "no worker answered in time"
    print(result.status, result.solution)

"""The queue: one public class per side over private modules.

- ``AsyncCaptchaQueue`` (``_producer``): submit, wait, results, cancel; it also carries the worker side
  (``_claims``: claim, renew, record_remote, complete, fail, release) and the admin side (``_admin``: stats,
  dead letters, the data-set epoch), built on ``_core`` (configuration, script calls, decoding).
- ``CaptchaQueue`` (``_sync``): the blocking twin, running the same coroutines on a private loop.
- ``_submission`` validates and encodes before anything reaches Redis; ``_waiting`` wakes waiters by push.
"""

from __future__ import annotations

from ._core import QueueConfig
from ._producer import AsyncCaptchaQueue, TaskStatus
from ._sync import CaptchaQueue

__all__ = ["AsyncCaptchaQueue", "CaptchaQueue", "QueueConfig", "TaskStatus"]

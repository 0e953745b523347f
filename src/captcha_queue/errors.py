"""Every error captcha-queue raises, under one root.

    CaptchaQueueError
    ├── ConfigError                 bad or missing configuration (CAPTCHAAI_KEY unset, bad URL, ...)
    ├── RedisUnavailable            Redis cannot be reached, or the connection was lost mid-call
    │   └── WriteNotReplicated      durability=replica: the primary took a write no replica acknowledged
    ├── ServerVersionError          the Redis server is too old (Redis >= 7.0 or Valkey >= 7.2 needed)
    ├── InvalidArgument             a bad argument (NaN/inf, a bad name or event id); nothing done (.field)
    ├── InvalidTask                 a submission failed validation; nothing was written (.field)
    ├── SubmitRefused               Redis took none or only part of a submission (.accepted: the ids it took)
    │   ├── QueueFull               max_queued tasks are queued already (backpressure)
    │   ├── RedisOutOfMemory        Redis is at maxmemory: no room for the submission
    │   └── IdempotencyConflict     the key names a task with another method, params or priority
    ├── TaskNotFound                no task (or dead letter) with that id
    ├── LeaseLost                   fencing: this worker no longer holds the task's lease
    │   └── TaskCancelled           ... because the task was cancelled while claimed
    ├── RedisCommandError           Redis refused a command (a key of the wrong type, an ACL rule...)
    │   └── ScriptError             a Lua script failed or answered with a code this version does not know
    └── SolverError                 the solver service said no (.code: the service's code)
        ├── TaskRejected            the input is wrong: fail the task now
        ├── Unsolvable              the service gave up; a fresh solve may succeed
        ├── SolverBusy              no free capacity: back off, costs no attempt
        ├── TransientError          5xx, HTML pages, timeouts, resets, garbage: retry with backoff
        └── AccountError            bad key, no threads, IP not allowed or banned: pause the fleet

Third-party errors (redis-py, aiohttp) are translated where they are caught, with ``raise ... from exc``.
Messages never contain the solver API key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AccountError",
    "CaptchaQueueError",
    "ConfigError",
    "IdempotencyConflict",
    "InvalidArgument",
    "InvalidTask",
    "LeaseLost",
    "QueueFull",
    "RedisCommandError",
    "RedisOutOfMemory",
    "RedisUnavailable",
    "ScriptError",
    "ServerVersionError",
    "SolverBusy",
    "SolverError",
    "SubmitRefused",
    "TaskCancelled",
    "TaskNotFound",
    "TaskRejected",
    "TransientError",
    "Unsolvable",
    "WriteNotReplicated",
]


class CaptchaQueueError(Exception):
    """The root of every error this package raises."""


class ConfigError(CaptchaQueueError):
    """Configuration is missing or malformed."""


class RedisUnavailable(CaptchaQueueError):
    """Redis could not be reached, or the connection broke during a call."""


class WriteNotReplicated(RedisUnavailable):
    """``durability=replica``: the primary applied the write but no replica acknowledged it in time
    (``WAIT``), so a failover now could lose it. Repeating the call is safe: a finish answers the stored
    result, a submission with an idempotency key the task already written."""


class ServerVersionError(CaptchaQueueError):
    """The Redis server lacks what captcha-queue needs."""


class InvalidArgument(CaptchaQueueError, ValueError):
    """An argument was refused before anything was done: a NaN or infinite number of seconds, a
    malformed namespace or account name, a malformed event id. Also a ValueError, which is what
    these checks raised before they were typed."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidTask(CaptchaQueueError):
    """A submission was refused before anything was written."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SubmitRefused(CaptchaQueueError):
    """Redis refused a submission, or part of a large ``submit_many``.

    ``submit_many`` writes a batch in chunks (``QueueConfig.submit_chunk`` tasks per script call),
    each applied whole or not at all. ``accepted`` maps the index of every entry of the call that
    was written (or answered by the existing task of its idempotency key) to its task id; every
    other entry was not written. Empty for ``submit``, and whenever nothing was written. Submitting
    the rest again is safe; submitting the same batch again is safe when it has idempotency keys.
    """

    def __init__(self, message: str, *, accepted: Mapping[int, str] | None = None, total: int = 1) -> None:
        super().__init__(message)
        self.reason = message
        self.accepted: dict[int, str] = dict(accepted or {})
        self.total = total

    def __str__(self) -> str:
        if not self.accepted:
            return f"{self.reason}; nothing was written"
        return (
            f"{self.reason}; {len(self.accepted)} of {self.total} tasks were accepted "
            "(their ids are in .accepted)"
        )


class QueueFull(SubmitRefused):
    """The queue holds ``max_queued`` tasks already (backpressure): submit again later."""

    def __init__(self, queued: int, limit: int, **kwargs: Any) -> None:
        super().__init__(f"the queue is full: {queued} tasks queued, max_queued is {limit}", **kwargs)
        self.queued = queued
        self.limit = limit


class RedisOutOfMemory(SubmitRefused):
    """Redis has no room for the submission (``maxmemory``). Work already accepted still finishes."""


class IdempotencyConflict(SubmitRefused):
    """The idempotency key already names a task submitted with another method, params or priority.

    ``task_id`` is that task; ``idempotency_key`` the key. Nothing of the conflicting entry was
    written (the same method, params and priority again answer the existing id, as before).
    """

    def __init__(self, message: str, *, task_id: str, idempotency_key: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.task_id = task_id
        self.idempotency_key = idempotency_key


class TaskNotFound(CaptchaQueueError):
    """No task with that id exists (or it has expired)."""


class LeaseLost(CaptchaQueueError):
    """The caller's lease on a task is gone: another worker may own it now. Nothing was written."""

    def __init__(self, task_id: str, message: str | None = None) -> None:
        super().__init__(message or f"lease lost on task {task_id}")
        self.task_id = task_id


class TaskCancelled(LeaseLost):
    """The task was cancelled while this worker held it: drop it and free its solver slot."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id, f"task {task_id} was cancelled")


class RedisCommandError(CaptchaQueueError):
    """Redis refused a command: a namespace key of the wrong type (written by someone else), a
    command an ACL user may not run, ... The message says which."""


class ScriptError(RedisCommandError):
    """A Lua script failed, or returned a code that this version does not know."""


class SolverError(CaptchaQueueError):
    """The solver service refused or failed a request.

    ``code`` is the service's own code (``ERROR_PAGEURL``, ``HTTP_502``, ``TIMEOUT``...);
    ``retry_after_s`` is a hint for how long to wait, where the service or the spec suggests one.
    """

    def __init__(self, code: str, message: str = "", *, retry_after_s: float | None = None) -> None:
        self.code = code
        self.message = message or code
        self.retry_after_s = retry_after_s
        super().__init__(f"{code}: {self.message}" if message and message != code else code)


class TaskRejected(SolverError):
    """The service rejected the task's input (ERROR_PAGEURL, bad image, bad proxy...): fail it now."""


class Unsolvable(SolverError):
    """ERROR_CAPTCHA_UNSOLVABLE: the service gave up on this one; a fresh solve may succeed."""


class SolverBusy(SolverError):
    """The account has no free capacity (no slot, zero balance while busy, 429): back off, no attempt."""


class TransientError(SolverError):
    """A server error, an HTML page, a timeout, a reset or an unparseable body: retry with backoff."""


class AccountError(SolverError):
    """The account cannot work (bad key, no threads, IP not allowed or banned): pause the fleet.

    ``pause_s`` is how long to pause before probing again; None means until an operator resumes
    or an account probe succeeds.
    """

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        pause_s: float | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(code, message, retry_after_s=retry_after_s)
        self.pause_s = pause_s

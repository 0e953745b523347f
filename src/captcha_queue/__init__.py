"""captcha-queue: a reliable Redis-backed queue for CAPTCHA-solving tasks."""

from __future__ import annotations

from .errors import (
    AccountError,
    CaptchaQueueError,
    ConfigError,
    IdempotencyConflict,
    InvalidArgument,
    InvalidTask,
    LeaseLost,
    QueueFull,
    RedisCommandError,
    RedisOutOfMemory,
    RedisUnavailable,
    ScriptError,
    ServerVersionError,
    SolverBusy,
    SolverError,
    SubmitRefused,
    TaskCancelled,
    TaskNotFound,
    TaskRejected,
    TransientError,
    Unsolvable,
)
from .models import AccountInfo, Claim, DataLoss, DeadLetter, Result, Solution, Stats, Task, TaskSpec
from .queue import AsyncCaptchaQueue, CaptchaQueue, TaskStatus

__version__ = "0.1.0"

__all__ = [
    "AccountError",
    "AccountInfo",
    "AsyncCaptchaQueue",
    "CaptchaQueue",
    "CaptchaQueueError",
    "Claim",
    "ConfigError",
    "DataLoss",
    "DeadLetter",
    "IdempotencyConflict",
    "InvalidArgument",
    "InvalidTask",
    "LeaseLost",
    "QueueFull",
    "RedisCommandError",
    "RedisOutOfMemory",
    "RedisUnavailable",
    "Result",
    "ScriptError",
    "ServerVersionError",
    "Solution",
    "SolverBusy",
    "SolverError",
    "Stats",
    "SubmitRefused",
    "Task",
    "TaskCancelled",
    "TaskNotFound",
    "TaskRejected",
    "TaskSpec",
    "TaskStatus",
    "TransientError",
    "Unsolvable",
    "__version__",
]

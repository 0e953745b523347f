"""The worker runtime: claims tasks, drives each through the solver, writes the one final result.

    from captcha_queue.worker import Worker, WorkerConfig
    worker = Worker(queue, solver, WorkerConfig(concurrency=2000, lease_s=30))
    await worker.run()          # until worker.stop(); then a graceful shutdown

    run_worker(WorkerSettings(redis_url=url, api_key=key))   # one whole process, as the CLI runs it

Rooms: ``runtime`` (``Worker``, composing ``_claiming``, ``_attempt`` and ``_leases`` over
``_shared``), ``polling`` (one poll timer per process), ``limiter`` (fleet-wide solver slots),
``breaker`` (account pause shared by the fleet), ``retry`` (the error policy), ``registry`` (live
workers), ``supervisor`` (P processes), ``multi`` (several accounts in one process: routing, failover),
``accounts`` (registered accounts: keys by reference, solvers, per-account metrics), ``namespaces``
(several namespaces in one process: weighted static shares of the limit, per-namespace metrics),
``namespace_accounts`` (several namespaces with their registered accounts: accounts shared by namespaces split
by weight, metrics summed both ways), ``events``
(observer hooks), ``config`` (every setting, declared once), ``process`` (``run_worker``: one process).
"""

from __future__ import annotations

from .breaker import AccountBreaker
from .config import WorkerConfig, WorkerSettings
from .events import NullEvents, WorkerEvents
from .limiter import LimiterConfig, SlotLimiter, SlotState, read_slot_state
from .multi import MultiWorker
from .polling import PollConfig, PollScheduler
from .process import run_worker
from .registry import WorkerInfo, WorkerRegistry
from .retry import Action, Backoff, Decision, RetryPolicy
from .runtime import Worker

__all__ = [
    "AccountBreaker",
    "Action",
    "Backoff",
    "Decision",
    "LimiterConfig",
    "MultiWorker",
    "NullEvents",
    "PollConfig",
    "PollScheduler",
    "RetryPolicy",
    "SlotLimiter",
    "SlotState",
    "Worker",
    "WorkerConfig",
    "WorkerEvents",
    "WorkerInfo",
    "WorkerRegistry",
    "WorkerSettings",
    "read_slot_state",
    "run_worker",
]

"""How one worker process runs: ``WorkerConfig``."""

from __future__ import annotations

from dataclasses import dataclass, field

from .limiter import LimiterConfig
from .polling import PollConfig
from .retry import RetryPolicy

__all__ = ["WorkerConfig"]


@dataclass(frozen=True)
class WorkerConfig:
    """How one worker process runs. Durations are real seconds; ``time_scale`` scales the solver pacing
    (poll cadence is the solver's, already scaled), retry backoffs, probes, the busy pause and the resume
    window."""

    concurrency: int = 100
    lease_s: float = 30.0
    renew_every_s: float | None = None  # default: a third of the lease
    claim_batch_max: int = 200
    claim_block_s: float = 2.0
    prefetch: int | None = None  # claimed tasks allowed to wait for a slot; default max(16, C / 10)
    solver_limit: int | None = None  # fleet-wide N; None: from the solver's threads (or unlimited)
    resume_window_s: float = 600.0
    grace_s: float = 30.0
    time_scale: float = 1.0
    probe_every_s: float = 60.0
    limit_refresh_s: float = 60.0
    #: Busy answers in a row (any task of this process) after which the account is paused for
    #: ``busy_pause_s``: busy that does not clear is no capacity at all (2captcha's zero balance).
    busy_pause_after: int = 20
    busy_pause_s: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    poll: PollConfig = field(default_factory=PollConfig)
    limiter: LimiterConfig = field(default_factory=LimiterConfig)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.lease_s <= 0 or self.time_scale <= 0:
            raise ValueError("lease_s and time_scale must be positive")
        if self.busy_pause_after < 1 or not 0 < self.busy_pause_s < float("inf"):
            raise ValueError("busy_pause_after must be at least 1 and busy_pause_s positive and finite")

    @property
    def renew_period_s(self) -> float:
        return self.renew_every_s if self.renew_every_s is not None else self.lease_s / 3

    @property
    def buffer(self) -> int:
        return self.prefetch if self.prefetch is not None else max(16, self.concurrency // 10)

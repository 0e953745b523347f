"""What to do after an error: a pure policy, no I/O, tested on its own.

Backoff is exponential with *full jitter* (a uniform draw in ``[0, min(cap, base * 2**n))``), so a
fleet that failed together does not retry together. The policy maps each error class to one action:

===================  =========================================================================
error                action
===================  =========================================================================
TransientError       retry through the queue after a backoff, consuming an attempt; final
                     "error" once ``max_attempts`` is reached
Unsolvable           a fresh solve (new remote task) through the queue, consuming an attempt
TaskRejected         fail now with the service's code: the input is wrong, retrying cannot help
SolverBusy           free the slot, back off locally and try again; never consumes an attempt
AccountError         pause the fleet, release the claim (no attempt consumed)
LeaseLost            drop the task: another worker owns it (or it was cancelled)
anything else        treated as transient (a bug in a solver must not kill tasks at once)
===================  =========================================================================
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from ..errors import (
    AccountError,
    LeaseLost,
    SolverBusy,
    SolverError,
    TaskRejected,
    TransientError,
    Unsolvable,
)

__all__ = ["Action", "Backoff", "Decision", "RetryPolicy"]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: ``uniform(0, min(cap_s, base_s * factor**(n-1)))``."""

    base_s: float = 1.0
    cap_s: float = 60.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.cap_s < 0 or self.factor < 1:
            raise ValueError("backoff needs base_s >= 0, cap_s >= 0 and factor >= 1")

    def ceiling_s(self, failures: int) -> float:
        """The upper bound of the draw after ``failures`` consecutive failures (1 = the first)."""
        exponent = max(0, failures - 1)
        # Cap the exponent so huge failure counts cannot overflow a float.
        return min(self.cap_s, self.base_s * self.factor ** min(exponent, 64))

    def delay_s(self, failures: int, rng: random.Random | None = None) -> float:
        """A delay drawn uniformly from ``[0, ceiling_s(failures)]``."""
        draw = (rng or random).random()
        return draw * self.ceiling_s(failures)

    def scaled(self, time_scale: float) -> Backoff:
        """The same shape with every duration multiplied (``--time-scale``)."""
        return Backoff(self.base_s * time_scale, self.cap_s * time_scale, self.factor)


class Action(enum.Enum):
    RETRY = "retry"  # q.fail(retry_in_s=delay): same task later, attempt consumed
    FRESH_SOLVE = "fresh_solve"  # q.fail(retry_in_s=delay): the service gave up, submit anew
    FAIL = "fail"  # q.fail(): the final "error" result now
    BUSY = "busy"  # free the slot, wait delay_s locally, try again; no attempt consumed
    PAUSE = "pause"  # pause the fleet, release the claim
    DROP = "drop"  # lease lost or cancelled: write nothing, forget the task


@dataclass(frozen=True)
class Decision:
    action: Action
    delay_s: float = 0.0
    code: str = ""
    consumes_attempt: bool = False


@dataclass(frozen=True)
class RetryPolicy:
    """Maps an error (and the attempt it happened on) to a Decision.

    ``transient`` paces queue-level retries of transient failures and fresh solves; ``busy`` paces the
    local waits after ``SolverBusy`` (counted by ``busy_count``, the consecutive busy answers).
    """

    transient: Backoff = Backoff(base_s=2.0, cap_s=60.0)
    busy: Backoff = Backoff(base_s=1.0, cap_s=30.0)
    unsolvable_delay_s: float = 0.0

    def scaled(self, time_scale: float) -> RetryPolicy:
        return RetryPolicy(
            self.transient.scaled(time_scale),
            self.busy.scaled(time_scale),
            self.unsolvable_delay_s * time_scale,
        )

    def decide(
        self,
        error: BaseException,
        *,
        attempt: int,
        max_attempts: int,
        busy_count: int = 1,
        rng: random.Random | None = None,
    ) -> Decision:
        code = error.code if isinstance(error, SolverError) else type(error).__name__
        attempts_left = attempt < max_attempts
        if isinstance(error, LeaseLost):
            return Decision(Action.DROP, code=code)
        if isinstance(error, AccountError):
            return Decision(Action.PAUSE, delay_s=error.pause_s or 0.0, code=code)
        if isinstance(error, SolverBusy):
            delay = self.busy.delay_s(busy_count, rng)
            if error.retry_after_s is not None:
                delay = max(delay, error.retry_after_s)
            return Decision(Action.BUSY, delay_s=delay, code=code)
        if isinstance(error, TaskRejected):
            return Decision(Action.FAIL, code=code, consumes_attempt=True)
        if isinstance(error, Unsolvable):
            if not attempts_left:
                return Decision(Action.FAIL, code=code, consumes_attempt=True)
            return Decision(
                Action.FRESH_SOLVE, delay_s=self.unsolvable_delay_s, code=code, consumes_attempt=True
            )
        # TransientError and anything unexpected: retry with backoff while attempts remain.
        if not attempts_left:
            return Decision(Action.FAIL, code=code, consumes_attempt=True)
        delay = self.transient.delay_s(attempt, rng)
        if isinstance(error, TransientError) and error.retry_after_s is not None:
            delay = max(delay, error.retry_after_s)
        return Decision(Action.RETRY, delay_s=delay, code=code, consumes_attempt=True)

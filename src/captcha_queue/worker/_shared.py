"""What the worker's parts share: the runs of this process and the state they are driven by.

``Run`` is one claimed task in this process and ``Stop`` the signal that ends its attempt early (a
release or an expiry). ``Shared`` holds what the claim loop (``_claiming``), the attempts
(``_attempt``) and the lease renewals (``_leases``) all read: the runs by task id, the events that
wake and stop them, the fleet limit's limiter once known, the account breaker, and the Redis retry
every call goes through. It also owns the two slot facts every part needs: how a run's slot is given
back, and whether a cancelled run keeps it while its solve is drained.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ..errors import AccountError, RedisUnavailable
from ..models import Claim
from .breaker import AccountBreaker
from .config import WorkerConfig
from .events import WorkerEvents
from .limiter import SlotLimiter
from .retry import Backoff

if TYPE_CHECKING:
    from ..queue._producer import AsyncCaptchaQueue
    from ..solvers.base import Solver

log = logging.getLogger("captcha_queue.worker")
T = TypeVar("T")

REDIS_BACKOFF = Backoff(base_s=0.05, cap_s=2.0)

Stage = Literal["claimed", "slot", "submit", "poll", "finish"]


def solver_provider(solver: Solver) -> str:
    """The provider a solver talks to (``captchaai``, ``2captcha``, ... ``instant``), as results record it."""
    return solver.provider


class Stop(Exception):
    """End this attempt with a release (fleet paused) or an expiry."""

    def __init__(self, how: Literal["release", "expire"]) -> None:
        super().__init__(how)
        self.how = how


@dataclass(eq=False)
class Run:
    """One claimed task in this process."""

    claim: Claim
    claimed_at: float = field(default_factory=time.monotonic)
    stage: Stage = "claimed"
    task: asyncio.Task[None] | None = None
    drop_reason: str | None = None  # set when renew said lost/cancelled, or on shutdown ("shutdown")
    resumed: bool = False
    submitted_at: float | None = None
    #: A solve of this run may be running at the service (from the moment in.php is called until an
    #: answer ends it): its slot must then stay counted when the run ends early (a ghost).
    at_service: bool = False
    data_lost: bool = False
    remote_id: str | None = None
    remote_since: float = 0.0  # monotonic time the remote solve started (as far as this run knows)


class Shared:
    """The state of one worker that its parts read and change (see the module docstring)."""

    def __init__(
        self,
        queue: AsyncCaptchaQueue,
        solver: Solver,
        config: WorkerConfig,
        *,
        events: WorkerEvents,
        worker_id: str,
        breaker: AccountBreaker,
        rng: random.Random,
    ) -> None:
        self.queue = queue
        self.solver = solver
        self.config = config
        self.events = events
        self.worker_id = worker_id
        self.breaker = breaker
        self.rng = rng
        self.limiter: SlotLimiter | None = None
        #: Set once the fleet limit is known (a limiter, or the account reports no thread limit):
        #: no solve is sent before.
        self.limit_known = asyncio.Event()
        self.runs: dict[str, Run] = {}
        self.room = asyncio.Event()  # wakes the claim loop: a run left the buffer or ended
        self.stopping = asyncio.Event()

    async def redis(self, call: Callable[[], Coroutine[Any, Any, T]], *, persist: bool = False) -> T:
        """Run a Redis call, retrying while Redis is unreachable (fencing decides what lands).

        While shutting down, a call gives up at once (with ``persist``, after ten failures).
        """
        failures = 0
        while True:
            try:
                return await call()
            except RedisUnavailable as exc:
                failures += 1
                if self.stopping.is_set() and (failures > 10 or not persist):
                    raise  # shutting down: the lease returns the task once Redis is back
                delay = REDIS_BACKOFF.delay_s(failures, self.rng) + 0.02
                log.warning("Redis unavailable (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)

    async def pause_account(self, error: AccountError, *, reason: str | None = None) -> None:
        if await self.breaker.trip(error, reason=reason):
            self.events.account_paused(error.code)

    def release_slot(self, run: Run, done: Literal["ok", "error"] = "error") -> None:
        """Give the run's slot back: freed if its solve is over, else left counted as a ghost."""
        if self.limiter is None:
            return
        outcome: Literal["ok", "error", "abandon", "abandon_lost"] = done
        if run.at_service:
            outcome = "abandon_lost" if run.data_lost else "abandon"
        self.limiter.release(run.claim.task_id, run.claim.lease_token, outcome=outcome)

    def drains(self, run: Run) -> bool:
        """A cancelled run polling its solve keeps its slot while the solve is polled to its end."""
        return (
            run.drop_reason == "cancelled"
            and run.stage == "poll"
            and run.remote_id is not None
            and self.limiter is not None
            and not self.stopping.is_set()
        )

"""A worker process serving several solver accounts of a namespace (``captcha-queue worker --accounts``).

``MultiWorker`` runs one ``Worker`` per account, each with everything an account has on its own: its
solver (its key, its provider), its fleet limiter (``slots:<account>``, the account's ``limit`` or
threads), its breaker (its pause) and its report sender; and one claim loop for all of them, which
routes every claimed task to one account:

* **method support**: only accounts whose ``methods`` (empty: all) list the task's method (its name
  or its wire method) and whose solver supports it (``Solver.supports`` where the client has one);
* **order**: the registry's routing order, priority (high first), then cost (low first), then name;
  the first such account that is not paused and has room (its concurrency and slot buffer) gets the
  task; when every one is full, the first one not paused holds it in its slot buffer;
* **failover**: a paused account (zero balance, bad key, banned IP, busy that does not clear; the
  breaker's pause, shared by the fleet) gets nothing. A task it held but had not solved is released
  by its run (``release``: back to the head of its priority, no attempt consumed, its history kept),
  claimed again at once and routed to the next account. Nothing is claimed while every account that
  could take work is paused, so there is no retry storm, and no task fails for an account's pause.

A task no account of this process can serve (its method) fails at once with ``NO_ACCOUNT_FOR_METHOD``:
run every account of the namespace in each multi-account worker, or route such methods elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import CaptchaQueueError, RedisUnavailable
from ..models import AccountSpec, Claim
from ..protocol.methods import spec_for
from ._shared import REDIS_BACKOFF
from .config import WorkerConfig
from .registry import new_worker_id
from .runtime import Worker

if TYPE_CHECKING:
    import random

    from ..queue._producer import AsyncCaptchaQueue

__all__ = ["MultiWorker", "serves"]

log = logging.getLogger("captcha_queue.worker")

NO_ACCOUNT_CODE = "NO_ACCOUNT_FOR_METHOD"


def serves(spec: AccountSpec, worker: Worker, claim: Claim) -> bool:
    """Whether the account may get this task (its method list, and its solver's support)."""
    task = claim.task
    if spec.methods:
        variant = spec_for(task.method, task.params)
        if not {task.method, variant.wire_method, variant.name} & set(spec.methods):
            return False
    return worker.solver.supports(task.method, task.params)


class MultiWorker:
    """One claim loop routing tasks to one ``Worker`` per account (see the module docstring)."""

    def __init__(
        self,
        queue: AsyncCaptchaQueue,
        accounts: Sequence[tuple[AccountSpec, Worker]],
        config: WorkerConfig,
        *,
        worker_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not accounts:
            raise ValueError("a MultiWorker needs at least one account")
        import random as _random

        self.queue = queue
        self.accounts = list(accounts)
        self.config = config
        self.worker_id = worker_id or new_worker_id()
        self._rng = rng or _random.Random()
        self._stopping = asyncio.Event()
        self.routed: dict[str, int] = {spec.name: 0 for spec, _ in self.accounts}

    def stop(self) -> None:
        """Begin a graceful shutdown (safe from a signal handler on the loop)."""
        self._stopping.set()

    async def run(self) -> None:
        """Run every account's worker and the routing claim loop until ``stop()``."""
        runs = [
            asyncio.create_task(w.run(claim_tasks=False), name=f"account:{spec.name}")
            for spec, w in self.accounts
        ]
        router = asyncio.create_task(self._route_loop(), name="route-loop")
        try:
            await self._stopping.wait()
        finally:
            self._stopping.set()
            await asyncio.wait([router], timeout=self.config.claim_block_s + 5.0)
            router.cancel()
            await asyncio.gather(router, return_exceptions=True)
            for _, worker in self.accounts:
                worker.stop()
            await asyncio.gather(*runs, return_exceptions=True)

    async def _wait_for_room(self) -> None:
        """Until an account's worker has room again (or a pause may have ended), bounded."""
        waiters = [asyncio.ensure_future(w.room.wait()) for _, w in self.accounts]
        waiters.append(asyncio.ensure_future(self._stopping.wait()))
        try:
            await asyncio.wait(
                waiters, timeout=max(0.05, self.config.renew_period_s), return_when="FIRST_COMPLETED"
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def _route_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            open_accounts = [w for _, w in self.accounts if not w.paused]
            count = min(self.config.claim_batch_max, sum(max(0, w.capacity()) for w in open_accounts))
            if count <= 0:
                # Every account paused or full: claim nothing (no storm); look again on room or soon.
                for _, worker in self.accounts:
                    worker.room.clear()
                await self._wait_for_room()
                continue
            try:
                claims = await self.queue.claim(
                    self.worker_id,
                    count,
                    self.config.lease_s,
                    block_s=self.config.claim_block_s,
                    stop=self._stopping,
                )
            except RedisUnavailable as exc:
                failures += 1
                delay = REDIS_BACKOFF.delay_s(failures, self._rng) + 0.05
                log.warning("claim: %s; retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            except Exception:
                failures += 1
                delay = REDIS_BACKOFF.delay_s(failures, self._rng) + 0.05
                log.exception("claim failed unexpectedly; retrying in %.2fs", delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            released = 0
            for claim in claims:
                released += not await self._route(claim)
            if released and not self._stopping.is_set():
                # Tasks only paused accounts serve went back to the queue: claim again after a
                # renewal period, not at once (they would come straight back).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.renew_period_s):
                        await self._stopping.wait()

    async def _route(self, claim: Claim) -> bool:
        """Hand the task to an account's worker (True), or release / fail it (False)."""
        candidates = [(spec, w) for spec, w in self.accounts if serves(spec, w, claim)]
        if self._stopping.is_set():
            candidates = []  # claimed while stopping: released below
        chosen = next((sw for sw in candidates if not sw[1].paused and sw[1].capacity() > 0), None)
        chosen = chosen or next((sw for sw in candidates if not sw[1].paused), None)
        if chosen is not None:
            spec, worker = chosen
            self.routed[spec.name] += 1
            worker.accept(claim)
            return True
        with contextlib.suppress(CaptchaQueueError):  # on failure its lease returns it
            if candidates or self._stopping.is_set():
                await self.queue.release(claim)  # every account that could take it is paused now
            else:
                log.warning(
                    "task %s: no account of this worker serves method %s", claim.task_id, claim.task.method
                )
                await self.queue.fail(
                    claim, NO_ACCOUNT_CODE, f"no account of this worker serves method {claim.task.method}"
                )
        return False

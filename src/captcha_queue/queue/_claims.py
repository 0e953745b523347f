"""The worker side of the queue: claim, renew, record_remote, complete, fail, release, expire, reap.

Every write presents the claim's lease token and is refused with ``LeaseLost`` (or ``TaskCancelled``)
when the worker no longer holds the task: nothing is written then. A claim blocks on Redis (BLPOP on
the wake marker, bounded by ``connection.BLOCK_MAX_S`` and by the next due retry or lease deadline),
never in an idle polling loop.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from redis.exceptions import ResponseError

from ..errors import InvalidArgument, ScriptError, SolverError
from ..models import Claim, RenewOutcome, Result, Solution
from ..store.connection import BLOCK_MAX_S, redis_errors_async
from ..store.keys import validate_account_ref
from ..store.scripts import Code
from ._core import QueueCore, as_str, check_seconds, log

__all__ = ["MIN_BLOCK_S", "WorkerAPI"]

#: The shortest BLPOP a claim issues (a BLPOP timeout of 0 would block forever).
MIN_BLOCK_S = 0.01
_MAX_ERROR_MESSAGE_CHARS = 2000
_solution_encoder = msgspec.json.Encoder()


def _lease_ms(lease_s: float) -> int:
    if not check_seconds("lease_s", lease_s) > 0:
        raise InvalidArgument(f"lease_s must be positive, got {lease_s!r}", field="lease_s")
    return max(1, round(lease_s * 1000))


def _error_fields(error: BaseException | str, message: str) -> tuple[str, str]:
    if isinstance(error, SolverError):
        code, text = error.code, message or error.message
    elif isinstance(error, BaseException):
        code, text = type(error).__name__, message or str(error)
    else:
        code, text = str(error), message
    return code[:200], text[:_MAX_ERROR_MESSAGE_CHARS]


class WorkerAPI(QueueCore):
    """Claims and fenced state transitions (mixed into AsyncCaptchaQueue)."""

    async def claim(
        self,
        worker_id: str,
        count: int,
        lease_s: float = 30.0,
        *,
        block_s: float = BLOCK_MAX_S,
        stop: asyncio.Event | None = None,
    ) -> list[Claim]:
        """Take up to ``count`` tasks (strict priorities, FIFO within one) under a lease.

        Blocks on Redis for up to ``block_s`` when nothing is ready (0: try once). Returns an empty
        list on timeout, while the fleet is paused, or as soon as ``stop`` is set while it waits
        (a shutting-down worker need not sit out the block; no claim is ever dropped by that).
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        lease_ms = _lease_ms(lease_s)
        deadline = time.monotonic() + max(0.0, check_seconds("block_s", block_s))
        while True:
            reply = await self._script(
                "claimTasks",
                worker_id,
                count,
                lease_ms,
                uuid.uuid4().hex,
                self.config.maintenance_batch,
            )
            code = int(reply[0])
            remaining = deadline - time.monotonic()
            if code == Code.WRONG_TYPE:
                # Someone wrote a key of the wrong type: nothing can be claimed. Back off, never spin.
                log.error("claim impossible in namespace %s: %s", self.namespace, as_str(reply[1]))
                if remaining > 0:
                    await asyncio.sleep(min(remaining, BLOCK_MAX_S))
                return []
            for warning in reply[2]:
                log.warning("claim in namespace %s: %s", self.namespace, as_str(warning))
            claims = await self._decode_claims(worker_id, reply[3:])
            if claims:
                return claims
            if remaining <= 0:
                return []
            wait_s = min(remaining, BLOCK_MAX_S)
            hint_ms = int(reply[1])
            if hint_ms >= 0:
                wait_s = min(wait_s, hint_ms / 1000)
            await self._block_on_wake(max(MIN_BLOCK_S, wait_s), stop)
            if stop is not None and stop.is_set():
                return []

    async def _block_on_wake(self, timeout_s: float, stop: asyncio.Event | None = None) -> None:
        if stop is not None:
            # Only the wait is given up (a wake marker at most, which heals itself), never a claim.
            block = asyncio.ensure_future(self._block_on_wake(timeout_s))
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({block, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in (block, stopped):
                    waiter.cancel()
                await asyncio.gather(block, stopped, return_exceptions=True)
            error = None if block.cancelled() else block.exception()
            if error is not None:
                raise error
            return
        async with redis_errors_async(self.client):
            try:
                await self.client.blpop([self.keys.wake], timeout=timeout_s)
            except ResponseError as exc:
                log.error("cannot block on %s: %s", self.keys.wake, exc)
                await asyncio.sleep(timeout_s)

    async def _decode_claims(self, worker_id: str, rows: Sequence[Any]) -> list[Claim]:
        claims: list[Claim] = []
        for row in rows:
            task_id = as_str(row[0])
            token = as_str(row[3])
            try:
                task = self._decode_task(row[1])
                if task.id != task_id:
                    raise ValueError(f"the stored task says id {task.id!r}")
            # msgspec's decode and validation errors, invalid UTF-8, nesting too deep to decode
            except (ValueError, RecursionError) as exc:
                await self._quarantine(task_id, token, f"unreadable task: {exc}")
                continue
            remote_ms = row[6]
            claims.append(
                Claim(
                    task=task,
                    attempt=int(row[2]),
                    lease_token=token,
                    worker_id=worker_id,
                    lease_deadline_ms=int(row[4]),
                    remote_id=as_str(row[5]) if row[5] is not None else None,
                    remote_submitted_at=int(remote_ms) / 1000 if remote_ms is not None else None,
                )
            )
        return claims

    async def _quarantine(self, task_id: str, token: str, reason: str) -> None:
        log.warning("task %s dead-lettered: %s", task_id, reason)
        reply = await self._script("quarantineTask", task_id, token, reason[:500])
        if int(reply[0]) < 0:
            log.warning("could not dead-letter task %s (code %s)", task_id, reply[0])

    async def renew(self, claims: Sequence[Claim], lease_s: float = 30.0) -> RenewOutcome:
        """Extend every given lease in one call; report the ones lost and the ones cancelled."""
        if not claims:
            return RenewOutcome(renewed=[], lost=[], cancelled=[])
        args: list[Any] = [_lease_ms(lease_s)]
        for claim in claims:
            args += (claim.task.id, claim.lease_token)
        reply = await self._script("renewLeases", *args)
        self._check(reply, claims[0].task.id)
        return RenewOutcome(
            renewed=[as_str(x) for x in reply[1]],
            lost=[as_str(x) for x in reply[2]],
            cancelled=[as_str(x) for x in reply[3]],
        )

    async def record_remote(self, claim: Claim, remote_id: str) -> Claim:
        """Store the solver-side id (and its submit time) under the lease; returns the updated claim."""
        reply = await self._script("recordRemote", claim.task.id, claim.lease_token, str(remote_id))
        self._check(reply, claim.task.id)
        return msgspec.structs.replace(
            claim, remote_id=str(remote_id), remote_submitted_at=int(reply[1]) / 1000
        )

    async def complete(
        self,
        claim: Claim,
        solution: Solution | str,
        *,
        provider: str | None = None,
        account: str | None = None,
    ) -> Result:
        """Finish the task with its solution: the one final result.

        ``provider`` and ``account`` (the solver account's ref, ``<name>/<key fingerprint>``) say who
        solved it; with the remote id recorded under the lease they go into the result, so that
        ``report`` can reach that account."""
        if isinstance(solution, str):
            solution = Solution(text=solution)
        if account is not None:
            validate_account_ref(account)
        payload = _solution_encoder.encode(solution)
        reply = await self._script(
            "completeTask", claim.task.id, claim.lease_token, payload, provider or "", account or ""
        )
        return self._final(reply, claim)

    async def fail(
        self,
        claim: Claim,
        error: BaseException | str,
        message: str = "",
        *,
        retry_in_s: float | None = None,
        provider: str | None = None,
        account: str | None = None,
    ) -> Result | None:
        """Record a failed attempt.

        With ``retry_in_s`` and attempts left: a retry is scheduled (None is returned; the remote id is
        cleared, a retry is a fresh solve). With ``retry_in_s`` and no attempts left: dead-lettered
        ("max_attempts") and finished "error". Without ``retry_in_s``: finished "error" at once.
        ``provider`` and ``account`` (the ref of the account that tried) go into a final error result
        (errors per account), never its remote id: an error cannot be reported for a refund.
        """
        code, text = _error_fields(error, message)
        retry = (
            "" if retry_in_s is None else str(max(0, round(check_seconds("retry_in_s", retry_in_s) * 1000)))
        )
        if account is not None:
            validate_account_ref(account)
        reply = await self._script(
            "failTask", claim.task.id, claim.lease_token, code, text, retry, provider or "", account or ""
        )
        if int(reply[0]) == Code.RETRY_SCHEDULED:
            return None
        return self._final(reply, claim)

    async def release(self, claim: Claim) -> None:
        """Give the task back to the head of its priority without consuming an attempt."""
        reply = await self._script("releaseTask", claim.task.id, claim.lease_token)
        self._check(reply, claim.task.id)

    async def expire(self, claim: Claim) -> Result:
        """Finish the task as "expired": its deadline passed before it reached the solver."""
        reply = await self._script("expireTask", claim.task.id, claim.lease_token)
        return self._final(reply, claim)

    async def reap(self, batch: int = 1000) -> int:
        """Cheap maintenance any worker may call periodically: requeue expired leases, promote due
        retries, delete expired results and old dead letters. Returns the entries handled."""
        reply = await self._script("reapExpired", max(1, batch))
        self._check(reply, "-")
        return int(reply[1]) + int(reply[2])

    def _final(self, reply: Any, claim: Claim) -> Result:
        """The Result of a finishing transition. A repeat of a finish that already went through under
        the same lease (e.g. retried after a lost reply) answers the stored result."""
        task_id = claim.task.id
        if int(reply[0]) == Code.ALREADY_FINAL and len(reply) > 1 and reply[1] is not None:
            stored = self._decode_result(reply[1], task_id)
            if stored is not None:
                return stored
        self._check(reply, task_id)
        result = self._decode_result(reply[1], task_id)
        if result is None:
            raise ScriptError(f"the final result of task {task_id} could not be read back")
        return result

"""CaptchaQueue: the blocking twin of AsyncCaptchaQueue, for scripts and threaded code.

There is one implementation: every method here runs the same-named coroutine of an
``AsyncCaptchaQueue`` on a private event loop in a background thread and waits for it. Any number
of threads may share one ``CaptchaQueue``.

    with CaptchaQueue.from_url("redis://127.0.0.1:6379/0", namespace="captcha") as q:
        task_id = q.submit("userrecaptcha", {"googlekey": "...", "pageurl": "https://..."})
        print(q.wait_result(task_id, timeout_s=120))
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar

from ..models import (
    AccountSpec,
    AccountStats,
    AuditEntry,
    Claim,
    DataLoss,
    DeadLetter,
    Pause,
    PauseState,
    RenewOutcome,
    ReportBacklog,
    ReportRequest,
    Result,
    SlotUsage,
    Solution,
    Stats,
    TaskRecord,
    TaskSpec,
    WorkerDrain,
    WorkerEntry,
)
from ..store.connection import BLOCK_MAX_S
from ._admin import OPERATOR_CODE
from ._producer import AsyncCaptchaQueue, TaskStatus

__all__ = ["CaptchaQueue"]

T = TypeVar("T")

#: How long closing may take before the loop is stopped regardless.
_SHUTDOWN_TIMEOUT_S = 10.0


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="captcha-queue-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a CaptchaQueue cannot be used from inside its own event loop")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt: do not leave the coroutine running
            raise

    def stop(self, closing: AsyncCaptchaQueue | None = None) -> None:
        """Close ``closing`` (when given) on the loop, end every task still on it, then stop.

        Called by close() and, for a queue dropped without close(), by its finalizer: a task left
        pending (the result subscription) would be destroyed with the loop and print "Task was
        destroyed but it is pending" and an un-awaited redis-py teardown coroutine."""
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(closing), self.loop).result(
                    timeout=_SHUTDOWN_TIMEOUT_S
                )
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
        self.loop.close()

    @staticmethod
    async def _shutdown(closing: AsyncCaptchaQueue | None) -> None:
        try:
            if closing is not None:
                await closing.aclose()
        finally:  # whatever closing raised, no task may outlive the loop
            current = asyncio.current_task()
            pending = [task for task in asyncio.all_tasks() if task is not current]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class CaptchaQueue:
    """A reliable Redis-backed queue of CAPTCHA tasks (blocking API; same names as AsyncCaptchaQueue)."""

    def __init__(self, url: str, *, namespace: str = "captcha", **options: Any) -> None:
        self._loop = _LoopThread()

        async def create() -> AsyncCaptchaQueue:
            return AsyncCaptchaQueue.from_url(url, namespace=namespace, **options)

        try:
            self._queue = self._loop.run(create())
        except BaseException:
            self._loop.stop()
            raise
        # Closes the queue and the loop thread if the object is dropped without close().
        self._finalizer = weakref.finalize(self, self._loop.stop, self._queue)

    @classmethod
    def from_url(cls, url: str, *, namespace: str = "captcha", **options: Any) -> CaptchaQueue:
        """A queue with its own client; close it with ``close()`` or a ``with`` block."""
        return cls(url, namespace=namespace, **options)

    @property
    def async_queue(self) -> AsyncCaptchaQueue:
        """The AsyncCaptchaQueue doing the work (lives on this object's private loop)."""
        return self._queue

    @property
    def namespace(self) -> str:
        return self._queue.namespace

    def close(self) -> None:
        """Close the Redis client and stop the loop thread (idempotent)."""
        self._finalizer()

    def __enter__(self) -> CaptchaQueue:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        async def step() -> T:
            return await anext(iterator)

        try:
            while True:
                try:
                    yield self._loop.run(step())
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None and self._finalizer.alive:
                self._loop.run(aclose())

    # -- producer --------------------------------------------------------------------------------
    def submit(
        self,
        method: str,
        params: Mapping[str, object],
        *,
        priority: str = "normal",
        idempotency_key: str | None = None,
        max_attempts: int = 3,
        expires_in_s: float | None = None,
        metadata: dict[str, Any] | None = None,
        pingback: str | None = None,
        pingback_format: Literal["form", "get", "json", "jsonapi"] = "form",
        task_id: str | None = None,
    ) -> str:
        return self._loop.run(
            self._queue.submit(
                method,
                params,
                priority=priority,
                idempotency_key=idempotency_key,
                max_attempts=max_attempts,
                expires_in_s=expires_in_s,
                metadata=metadata,
                pingback=pingback,
                pingback_format=pingback_format,
                task_id=task_id,
            )
        )

    def submit_many(self, specs: Iterable[TaskSpec | Mapping[str, Any]]) -> list[str]:
        return self._loop.run(self._queue.submit_many(list(specs)))

    def get_result(self, task_id: str) -> Result | None:
        return self._loop.run(self._queue.get_result(task_id))

    def wait_result(self, task_id: str, timeout_s: float | None = 120.0) -> Result | None:
        return self._loop.run(self._queue.wait_result(task_id, timeout_s))

    def as_completed(self, task_ids: Iterable[str], timeout_s: float | None = None) -> Iterator[Result]:
        return self._iterate(self._queue.as_completed(list(task_ids), timeout_s))

    def status(self, task_id: str) -> TaskStatus | None:
        return self._loop.run(self._queue.status(task_id))

    def cancel(self, task_id: str) -> bool:
        return self._loop.run(self._queue.cancel(task_id))

    def report(self, task_id: str, *, correct: bool) -> bool:
        return self._loop.run(self._queue.report(task_id, correct=correct))

    def stats(self, account: str = "default") -> Stats:
        return self._loop.run(self._queue.stats(account))

    def epoch(self) -> str:
        return self._loop.run(self._queue.epoch())

    def check_data_loss(self) -> DataLoss | None:
        return self._loop.run(self._queue.check_data_loss())

    def listen(self, from_id: str | None = None) -> Iterator[Result]:
        return self._iterate(self._queue.listen(from_id))

    def listen_events(self, from_id: str | None = None) -> Iterator[tuple[str, Result]]:
        return self._iterate(self._queue.listen_events(from_id))

    # -- dead letters ----------------------------------------------------------------------------
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self._loop.run(self._queue.dead_letters(limit))

    def dead_letter(self, task_id: str) -> DeadLetter | None:
        return self._loop.run(self._queue.dead_letter(task_id))

    def requeue(self, task_id: str) -> bool:
        return self._loop.run(self._queue.requeue(task_id))

    def requeue_all(self) -> int:
        return self._loop.run(self._queue.requeue_all())

    def purge_dead(self) -> int:
        return self._loop.run(self._queue.purge_dead())

    # -- reads for dashboards, the audit trail ---------------------------------------------------
    def recent_results(self, since_s: float = 3600.0, limit: int = 1000) -> list[tuple[str, Result]]:
        return self._loop.run(self._queue.recent_results(since_s, limit))

    def task_record(self, task_id: str) -> TaskRecord | None:
        return self._loop.run(self._queue.task_record(task_id))

    def task_id_for(self, idempotency_key: str) -> str | None:
        return self._loop.run(self._queue.task_id_for(idempotency_key))

    def slot_usage(self, account: str = "default") -> SlotUsage:
        return self._loop.run(self._queue.slot_usage(account))

    def record_audit(
        self, *, actor: str, role: str, action: str, target: str = "", outcome: str = "", detail: str = ""
    ) -> str:
        return self._loop.run(
            self._queue.record_audit(
                actor=actor, role=role, action=action, target=target, outcome=outcome, detail=detail
            )
        )

    def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        return self._loop.run(self._queue.audit_log(limit))

    # -- the fleet: pauses, workers, Redis time --------------------------------------------------
    def server_time_ms(self) -> int:
        return self._loop.run(self._queue.server_time_ms())

    def pause_state(self, account: str | None = None) -> PauseState:
        return self._loop.run(self._queue.pause_state(account))

    def pause(
        self,
        reason: str = "paused by operator",
        for_s: float | None = None,
        *,
        account: str | None = None,
        code: str = OPERATOR_CODE,
        worker: str | None = None,
    ) -> tuple[Pause, bool]:
        return self._loop.run(self._queue.pause(reason, for_s, account=account, code=code, worker=worker))

    def resume(self, account: str | None = None, *, since_ms: int | None = None) -> list[Pause]:
        return self._loop.run(self._queue.resume(account, since_ms=since_ms))

    def probe_turn(self, account: str, every_s: float) -> int | None:
        return self._loop.run(self._queue.probe_turn(account, every_s))

    def workers(self, include_dead: bool = False) -> list[WorkerEntry]:
        return self._loop.run(self._queue.workers(include_dead))

    def register_worker(self, worker_id: str, info: Mapping[str, Any], *, ttl_s: float = 30.0) -> int:
        return self._loop.run(self._queue.register_worker(worker_id, info, ttl_s=ttl_s))

    def heartbeat_worker(
        self, worker_id: str, info: Mapping[str, Any], *, ttl_s: float = 30.0
    ) -> tuple[int, WorkerDrain | None]:
        return self._loop.run(self._queue.heartbeat_worker(worker_id, info, ttl_s=ttl_s))

    def unregister_worker(self, worker_id: str) -> int:
        return self._loop.run(self._queue.unregister_worker(worker_id))

    def drain_worker(self, worker_id: str, *, reason: str = "drained by operator") -> bool:
        return self._loop.run(self._queue.drain_worker(worker_id, reason=reason))

    def drain_requests(self) -> dict[str, WorkerDrain]:
        return self._loop.run(self._queue.drain_requests())

    # -- worker side -----------------------------------------------------------------------------
    def claim(
        self, worker_id: str, count: int, lease_s: float = 30.0, *, block_s: float = BLOCK_MAX_S
    ) -> list[Claim]:
        return self._loop.run(self._queue.claim(worker_id, count, lease_s, block_s=block_s))

    def renew(self, claims: Sequence[Claim], lease_s: float = 30.0) -> RenewOutcome:
        return self._loop.run(self._queue.renew(claims, lease_s))

    def record_remote(self, claim: Claim, remote_id: str) -> Claim:
        return self._loop.run(self._queue.record_remote(claim, remote_id))

    def complete(
        self,
        claim: Claim,
        solution: Solution | str,
        *,
        provider: str | None = None,
        account: str | None = None,
    ) -> Result:
        return self._loop.run(self._queue.complete(claim, solution, provider=provider, account=account))

    def fail(
        self,
        claim: Claim,
        error: BaseException | str,
        message: str = "",
        *,
        retry_in_s: float | None = None,
        provider: str | None = None,
        account: str | None = None,
    ) -> Result | None:
        return self._loop.run(
            self._queue.fail(claim, error, message, retry_in_s=retry_in_s, provider=provider, account=account)
        )

    def release(self, claim: Claim) -> None:
        self._loop.run(self._queue.release(claim))

    def expire(self, claim: Claim) -> Result:
        return self._loop.run(self._queue.expire(claim))

    def reap(self, batch: int = 1000) -> int:
        return self._loop.run(self._queue.reap(batch))

    def add_account(self, spec: AccountSpec, *, replace: bool = False) -> AccountSpec:
        return self._loop.run(self._queue.add_account(spec, replace=replace))

    def remove_account(self, name: str) -> bool:
        return self._loop.run(self._queue.remove_account(name))

    def accounts(self) -> list[AccountSpec]:
        return self._loop.run(self._queue.accounts())

    def account_stats(self) -> list[AccountStats]:
        return self._loop.run(self._queue.account_stats())

    def account(self, name: str) -> AccountSpec | None:
        return self._loop.run(self._queue.account(name))

    def account_balances(self) -> dict[str, tuple[float, float]]:
        return self._loop.run(self._queue.account_balances())

    def report_backlog(self) -> list[ReportBacklog]:
        return self._loop.run(self._queue.report_backlog())

    def purge_reports(self, account: str, *, older_than_s: float = 0.0) -> list[ReportRequest]:
        return self._loop.run(self._queue.purge_reports(account, older_than_s=older_than_s))

    def expire_reports(self, max_age_s: float) -> list[ReportRequest]:
        return self._loop.run(self._queue.expire_reports(max_age_s))

    def take_reports(self, account: str, count: int = 100, lease_s: float = 30.0) -> list[ReportRequest]:
        return self._loop.run(self._queue.take_reports(account, count, lease_s))

    def ack_report(self, request: ReportRequest) -> None:
        self._loop.run(self._queue.ack_report(request))

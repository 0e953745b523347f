"""AsyncCaptchaQueue: the producer API, assembled with the worker side and the admin side.

    q = AsyncCaptchaQueue.from_url("redis://127.0.0.1:6379/0", namespace="captcha")
    task_id = await q.submit("userrecaptcha", {"googlekey": "...", "pageurl": "https://..."})
    result = await q.wait_result(task_id, timeout_s=120)

Submissions are validated in the caller's process (``InvalidTask`` means Redis was not touched), then
written by one script call per batch. Results are waited for by push (one subscription per queue
object), never by polling. ``CaptchaQueue`` (sync.py) is the blocking twin of this class.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ..errors import (
    CaptchaQueueError,
    IdempotencyConflict,
    QueueFull,
    RedisOutOfMemory,
    ScriptError,
    SubmitRefused,
)
from ..models import Result, TaskSpec
from ..store.connection import make_client, node_info, redis_errors_async
from ..store.scripts import Code
from ._accounts import AccountsAPI
from ._admin import AdminAPI
from ._claims import WorkerAPI
from ._core import QueueConfig, as_str, check_seconds, check_task_id
from ._reports import ReportAPI
from ._submission import PreparedTask, check_minted_id, new_ids, prepare, prepare_entry
from ._waiting import ResultWaiter, check_event_id, listen_events

__all__ = ["AsyncCaptchaQueue", "QueueConfig", "TaskStatus"]


TaskStatus = Literal["queued", "delayed", "active", "done"]

#: A submission estimated at this many bytes or more (or larger than one script call) first checks
#: Redis's memory headroom (INFO memory): one more round trip, only for big batches. Smaller ones
#: rely on Redis refusing submitTasks whole above maxmemory (scripts.py).
MEMORY_CHECK_BYTES = 1 << 20
#: What Redis keeps per task beside the two JSON documents (hash and list entries, the times the
#: script appends, the idempotency mapping), and the allocator's rounding of the documents (a quarter):
#: measured on Redis 7.0, 860 bytes for a 355-byte task, 2,880 for a 2,165-byte one.
_TASK_OVERHEAD_BYTES = 512


class _StateStatus(msgspec.Struct):
    status: TaskStatus = "queued"


_state_decoder = msgspec.json.Decoder(_StateStatus)


class AsyncCaptchaQueue(WorkerAPI, AccountsAPI, AdminAPI, ReportAPI):
    """A reliable Redis-backed queue of CAPTCHA tasks (asyncio)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str = "captcha",
        result_ttl_s: float = 3600.0,
        dead_ttl_s: float = 7 * 86400.0,
        events_maxlen: int = 10_000,
        max_payload_bytes: int = 512 * 1024,
        allow_unknown_methods: bool = False,
        max_queued: int | None = None,
        allow_private_targets: bool = False,
        owns_client: bool = False,
    ) -> None:
        config = QueueConfig(
            result_ttl_s=result_ttl_s,
            dead_ttl_s=dead_ttl_s,
            events_maxlen=events_maxlen,
            max_payload_bytes=max_payload_bytes,
            allow_unknown_methods=allow_unknown_methods,
            max_queued=max_queued,
            allow_private_targets=allow_private_targets,
        )
        super().__init__(client, namespace=namespace, config=config, owns_client=owns_client)
        self._waiter: ResultWaiter | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "captcha",
        max_connections: int = 32,
        **options: Any,
    ) -> AsyncCaptchaQueue:
        """A queue with its own client (bounded pool, explicit timeouts), closed by ``aclose``."""
        client = make_client(url, max_connections=max_connections)
        return cls(client, namespace=namespace, owns_client=True, **options)

    async def __aenter__(self) -> AsyncCaptchaQueue:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the shared subscription and close the client if this object created it."""
        if self._waiter is not None:
            await self._waiter.aclose()
            self._waiter = None
        await super().aclose()

    @property
    def waiter(self) -> ResultWaiter:
        """The one subscription every waiter of this queue object shares (started on first use)."""
        if self._waiter is None:
            self._waiter = ResultWaiter(self.client, self.keys)
        return self._waiter

    # -- submitting ----------------------------------------------------------------------------
    async def submit(
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
        """Validate and enqueue one task; returns its id (the existing id for a known idempotency key).

        ``pingback``: an http(s) URL that gets the result when the task is final (delivered by a
        ``captcha_queue.webhooks.WebhookDeliverer``, signed, retried until delivered or expired);
        ``pingback_format``: "form" (POST id, code, status), "get" (the same as query parameters),
        "json" (POST the whole result) or "jsonapi" (POST getTaskResult's document and taskId). A
        literal private or loopback address is refused unless the queue's ``allow_private_targets``
        is on.

        ``task_id``: an id minted by the caller (default: a random one), 1-64 characters of letters,
        digits, ``_.:-``; the caller guarantees it names no other task of the namespace (the gateway
        mints numeric ids from a Redis counter)."""
        prepared = prepare(
            method,
            params,
            priority=priority,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            expires_in_s=expires_in_s,
            metadata=metadata,
            pingback=pingback,
            pingback_format=pingback_format,
            max_payload_bytes=self.config.max_payload_bytes,
            allow_unknown=self.config.allow_unknown_methods,
            allow_private_targets=self.config.allow_private_targets,
            task_id=check_minted_id(task_id) if task_id is not None else None,
        )
        return (await self._write([prepared]))[0]

    async def submit_many(self, specs: Iterable[TaskSpec | Mapping[str, Any]]) -> list[str]:
        """Validate every task first (nothing is written if one is invalid), then enqueue them all in
        one round trip, in order (FIFO within each priority). Returns the ids in input order."""
        entries = list(specs)
        ids = new_ids(len(entries))
        prepared = [
            prepare_entry(
                entry,
                index,
                max_payload_bytes=self.config.max_payload_bytes,
                allow_unknown=self.config.allow_unknown_methods,
                allow_private_targets=self.config.allow_private_targets,
                task_id=ids[index],
            )
            for index, entry in enumerate(entries)
        ]
        if not prepared:
            return []
        return await self._write(prepared)

    async def _write(self, prepared: list[PreparedTask]) -> list[str]:
        """Write the batch in order, ``submit_chunk`` tasks per script call, each applied whole or
        not at all. The first refusal stops the batch: the error carries the ids of the chunks
        written before it (``SubmitRefused.accepted``, a prefix of the batch)."""
        epoch_candidate = self._epoch_candidate()
        chunk = self.config.submit_chunk
        max_queued = "" if self.config.max_queued is None else str(self.config.max_queued)
        await self._check_memory(prepared)
        ids: list[str] = []
        for first in range(0, len(prepared), chunk):
            part = prepared[first : first + chunk]
            args: list[Any] = [epoch_candidate, max_queued, len(part)]
            for task in part:
                args.extend(task.script_args())
            try:
                reply = await self._script("submitTasks", *args)
                if int(reply[0]) != Code.OK:
                    raise self._refusal(reply, prepared, first)
            except SubmitRefused as exc:
                exc.accepted, exc.total = dict(enumerate(ids)), len(prepared)
                raise
            except ScriptError as exc:
                if not ids:
                    raise
                raise SubmitRefused(str(exc), accepted=dict(enumerate(ids)), total=len(prepared)) from exc
            self._note_acknowledged(as_str(reply[1]), int(reply[2]))
            ids.extend(as_str(task_id) for task_id in reply[3:])
        return ids

    def _refusal(self, reply: Any, prepared: list[PreparedTask], first: int) -> CaptchaQueueError:
        """The error for a submitTasks refusal of the chunk starting at ``first``."""
        code = int(reply[0])
        if code == Code.QUEUE_FULL:
            return QueueFull(int(reply[1]), int(reply[2]))
        if code == Code.IDEMPOTENCY_CONFLICT:
            index = first + int(reply[1])
            key, existing = prepared[index].idempotency_key, as_str(reply[2])
            where = f"task {index} of the batch: " if len(prepared) > 1 else ""
            return IdempotencyConflict(
                f"{where}idempotency key {key!r} already names task {existing}, submitted with "
                "another method, params or priority",
                task_id=existing,
                idempotency_key=key,
            )
        try:
            self._check(reply, prepared[first].id)
        except CaptchaQueueError as exc:
            return exc
        return ScriptError(f"submitTasks answered code {code}")

    async def _check_memory(self, prepared: list[PreparedTask]) -> None:
        """Refuse a big batch that cannot fit below Redis's maxmemory before writing any of it.
        (Each chunk is also refused whole by Redis once it is above maxmemory: scripts.py.)"""
        documents = sum(len(t.task_open) + len(t.state_open) + len(t.idempotency_key) for t in prepared)
        needed = documents * 5 // 4 + len(prepared) * _TASK_OVERHEAD_BYTES
        if len(prepared) <= self.config.submit_chunk and needed < MEMORY_CHECK_BYTES:
            return
        try:
            async with redis_errors_async(self.client):
                info = await node_info(self.client, self.keys.tasks, "memory")
        except CaptchaQueueError as exc:
            if isinstance(exc.__cause__, ResponseError):
                return  # INFO not allowed to this user: each chunk is still refused whole by Redis
            raise
        used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        if limit and used + needed > limit:
            raise RedisOutOfMemory(
                f"Redis has no room for {len(prepared)} tasks (about {needed:,} bytes): "
                f"{used:,} of maxmemory {limit:,} bytes in use",
                total=len(prepared),
            )

    @staticmethod
    def _epoch_candidate() -> str:
        return uuid.uuid4().hex

    # -- results -------------------------------------------------------------------------------
    async def get_result(self, task_id: str) -> Result | None:
        """The final result if there is one (non-blocking)."""
        return await self.waiter.fetch(check_task_id(task_id))

    async def wait_result(self, task_id: str, timeout_s: float | None = 120.0) -> Result | None:
        """The final result, pushed as soon as it is written; None if ``timeout_s`` passes first.

        A result that finished before the call is returned at once. RedisUnavailable if Redis cannot
        be reached (a short outage during the wait is ridden out: the subscription reconnects)."""
        check_task_id(task_id)
        if timeout_s is not None:
            check_seconds("timeout_s", timeout_s)
        return await self.waiter.wait(task_id, timeout_s)

    def as_completed(self, task_ids: Iterable[str], timeout_s: float | None = None) -> AsyncIterator[Result]:
        """Results in the order they finish; stops (without raising) when ``timeout_s`` passes."""
        ids = [check_task_id(task_id) for task_id in task_ids]
        if timeout_s is not None:
            check_seconds("timeout_s", timeout_s)
        return self.waiter.as_completed(ids, timeout_s)

    async def status(self, task_id: str) -> TaskStatus | None:
        """Where a task is now: ``queued``, ``delayed`` (a retry waits its turn), ``active`` (a worker
        holds it) or ``done`` (its result is written); None if unknown or its result has expired."""
        check_task_id(task_id)
        async with redis_errors_async(self.client):
            raw = await self.client.hget(self.keys.state, task_id)
        if raw is None:
            return None
        try:
            return _state_decoder.decode(raw).status
        except msgspec.DecodeError:
            return "queued"  # unreadable: still the queue's (a claim dead-letters it with a reason)

    async def cancel(self, task_id: str) -> bool:
        """End a task as "cancelled": at once when queued or delayed; when claimed, also at once, and
        its worker gets TaskCancelled at its next step. False if it had finished or does not exist."""
        check_task_id(task_id)
        reply = await self._script("cancelTask", task_id)
        code = int(reply[0])
        if code in (Code.NOT_FOUND, Code.ALREADY_FINAL):
            return False
        self._check(reply, task_id)
        return True

    # -- every completion ----------------------------------------------------------------------
    def listen(self, from_id: str | None = None) -> AsyncGenerator[Result, None]:
        """Every final result as it is written, from the events stream (resumes after disconnects).
        InvalidArgument at once for a malformed ``from_id``."""
        check_event_id(from_id)
        return _results_only(listen_events(self.client, self.keys, from_id))

    def listen_events(self, from_id: str | None = None) -> AsyncGenerator[tuple[str, Result], None]:
        """Like ``listen``, with each result's stream id: pass the last one as ``from_id`` to resume."""
        check_event_id(from_id)
        return listen_events(self.client, self.keys, from_id)


async def _results_only(events: AsyncIterator[tuple[str, Result]]) -> AsyncGenerator[Result, None]:
    try:
        async for _event_id, result in events:
            yield result
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()

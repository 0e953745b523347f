"""Push waiting for results, and the resumable stream of completions.

``ResultWaiter``: one PUB/SUB subscription per queue object, shared by every waiter of the process
(thousands of waiters, one connection). A waiter registers, makes sure the subscription is live,
*then* reads the results hash: a result that finished before the wait began is found by the read,
one that finishes after it is announced on the channel, so nothing falls between the two. After a
lost connection the subscription is re-established and every waiter checks again (completions
published while it was down are found in the results hash).

``listen_events``: every final result from the capped events stream, resuming after the last entry
seen when the connection breaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import reprlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Any

import msgspec
import redis
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ..errors import InvalidArgument, RedisUnavailable
from ..models import Result
from ..store.connection import (
    BLOCK_MAX_S,
    PRIMARY_CHECK_S,
    client_profile,
    primary_moved,
    redis_errors_async,
    refresh_topology,
)
from ..store.keys import Keys
from ._core import decode_result

__all__ = ["RECONNECT_GIVE_UP_S", "ResultWaiter", "check_event_id", "listen_events"]

log = logging.getLogger("captcha_queue.waiting")

#: A listener keeps reconnecting for this long before it raises RedisUnavailable.
RECONNECT_GIVE_UP_S = 30.0
_CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
_HMGET_CHUNK = 1000
# A stream id as XREAD takes it: "<ms>-<seq>" or "<ms>", each part at most 2**64 - 1.
_EVENT_ID_RE = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")

_result_decoder = msgspec.json.Decoder(Result)


class _Announcement(msgspec.Struct):
    id: str
    status: str = ""


class _ResultAnnouncement(msgspec.Struct):
    """A completion as published: the id, and the whole result, so a waiter needs no fetch."""

    id: str
    status: str = ""
    result: Result | None = None


_announcement_decoder = msgspec.json.Decoder(_Announcement)
_result_announcement_decoder = msgspec.json.Decoder(_ResultAnnouncement)


class ResultWaiter:
    """Dispatches completions from one subscription to every waiter of a queue object."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys
        self._watchers: dict[str, set[Callable[[str], None]]] = {}
        self._pushed: dict[str, Result] = {}  # results carried by announcements, for watched ids
        self._subscribed = asyncio.Event()
        self._failed = asyncio.Event()
        self._last_error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # -- the subscription ----------------------------------------------------------------------
    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._failed.clear()
            self._task = asyncio.create_task(self._run(), name=f"captcha-queue-waiter:{self._keys.namespace}")

    async def _run(self) -> None:
        backoff_s = 0.05
        connected_before = False
        # On a Cluster the scripts SPUBLISH (sharded pub/sub): the channel's slot's shard delivers,
        # and redis-py follows the slot to its new primary after a failover or a migration (each
        # new subscription confirmed counts as a reconnect below: everyone checks again).
        sharded = client_profile(self._client).publish_command == "SPUBLISH"
        while not self._closing:
            pubsub = self._client.pubsub()
            try:
                if sharded:
                    await pubsub.ssubscribe(self._keys.channel)
                else:
                    await pubsub.subscribe(self._keys.channel)
                while not self._closing:
                    if sharded:
                        message = await pubsub.get_sharded_message(timeout=BLOCK_MAX_S)
                    else:
                        message = await pubsub.get_message(timeout=PRIMARY_CHECK_S)
                        if await primary_moved(self._client, pubsub.connection):
                            # The primary was failed over while this one still answers (it is
                            # demoted up to ~10 s later): completions are published on the new one.
                            log.info("result subscription: following the new primary")
                            backoff_s = 0.0
                            break
                    _raise_if_cancelling(None)  # a cancel swallowed in the read (see there)
                    if message is None:
                        continue
                    if message["type"] in ("subscribe", "ssubscribe"):
                        self._failed.clear()
                        self._subscribed.set()
                        backoff_s = 0.05
                        if connected_before:
                            # Completions published while we were away: everyone checks again.
                            self._notify_all()
                        connected_before = True
                    elif message["type"] in ("message", "smessage"):
                        self._dispatch(message["data"])
            except _CONNECTION_ERRORS as exc:
                _raise_if_cancelling(exc)
                self._subscribed.clear()
                self._last_error = exc
                self._failed.set()
                log.warning("result subscription lost (%s); reconnecting", exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep serving waiters; never let the dispatcher die silently
                self._subscribed.clear()
                self._last_error = exc
                self._failed.set()
                log.exception("result subscription failed; restarting")
            finally:
                with contextlib.suppress(*_CONNECTION_ERRORS, RuntimeError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis-py 8.2
            if not self._closing:
                await asyncio.sleep(backoff_s)
                backoff_s = min(max(backoff_s * 2, 0.05), 2.0)
                if sharded:  # the slot may have a new primary (failover, migration): look again
                    await refresh_topology(self._client)

    def _dispatch(self, data: bytes | str) -> None:
        result: Result | None = None
        try:
            announcement = _result_announcement_decoder.decode(data)
            task_id, result = announcement.id, announcement.result
        except (ValueError, RecursionError):
            try:  # an unreadable result: waiters still wake, and read it from the results hash
                task_id = _announcement_decoder.decode(data).id
            except (ValueError, RecursionError):
                log.warning("ignored a malformed completion announcement: %r", data[:200])
                return
        callbacks = self._watchers.get(task_id)
        if not callbacks:
            return
        if result is not None:
            self._pushed[task_id] = result  # kept while someone watches this id
        for callback in tuple(callbacks):
            callback(task_id)

    def _notify_all(self) -> None:
        for task_id, callbacks in list(self._watchers.items()):
            for callback in tuple(callbacks):
                callback(task_id)

    def _watch(self, task_id: str, callback: Callable[[str], None]) -> None:
        self._watchers.setdefault(task_id, set()).add(callback)

    def _unwatch(self, task_id: str, callback: Callable[[str], None]) -> None:
        callbacks = self._watchers.get(task_id)
        if callbacks is not None:
            callbacks.discard(callback)
            if not callbacks:
                del self._watchers[task_id]
                self._pushed.pop(task_id, None)

    async def _ensure_subscribed(self) -> None:
        """Return once the subscription is live; RedisUnavailable if it cannot be made now."""
        self._start()
        if self._subscribed.is_set():
            return
        subscribed = asyncio.ensure_future(self._subscribed.wait())
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait({subscribed, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            subscribed.cancel()
            failed.cancel()
        if not self._subscribed.is_set():
            raise RedisUnavailable(
                f"cannot subscribe to completions: {self._last_error}"
            ) from self._last_error

    # -- reading results -----------------------------------------------------------------------
    async def fetch(self, task_id: str) -> Result | None:
        async with redis_errors_async(self._client):
            raw = await self._client.hget(self._keys.results, task_id)
        return decode_result(raw, task_id)

    async def _collect(self, task_ids: list[str]) -> dict[str, Result]:
        """Results of ``task_ids``: those the announcement carried, the rest in one HMGET per chunk."""
        found = {task_id: self._pushed[task_id] for task_id in task_ids if task_id in self._pushed}
        missing = [task_id for task_id in task_ids if task_id not in found]
        if missing:
            found.update(await self.fetch_many(missing))
        return found

    async def fetch_many(self, task_ids: list[str]) -> dict[str, Result]:
        found: dict[str, Result] = {}
        for first in range(0, len(task_ids), _HMGET_CHUNK):
            chunk = task_ids[first : first + _HMGET_CHUNK]
            async with redis_errors_async(self._client):
                raws = await self._client.hmget(self._keys.results, chunk)
            for task_id, raw in zip(chunk, raws, strict=True):
                result = decode_result(raw, task_id)
                if result is not None:
                    found[task_id] = result
        return found

    # -- waiting -------------------------------------------------------------------------------
    async def wait(self, task_id: str, timeout_s: float | None) -> Result | None:
        """The task's final result, or None when ``timeout_s`` passes first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        wake = asyncio.Event()

        def notify(_: str) -> None:
            wake.set()

        self._watch(task_id, notify)
        try:
            await self._ensure_subscribed()
            while True:
                wake.clear()
                result = self._pushed.get(task_id) or await self.fetch(task_id)
                if result is not None:
                    return result
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                try:
                    await asyncio.wait_for(wake.wait(), remaining)
                except TimeoutError:
                    # One last look: covers an announcement lost while the subscription was down.
                    return await self.fetch(task_id)
        finally:
            self._unwatch(task_id, notify)

    async def as_completed(self, task_ids: Iterable[str], timeout_s: float | None) -> AsyncIterator[Result]:
        """Results in the order they finish (those already final first). Stops at ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pending = dict.fromkeys(task_ids)
        ready: asyncio.Queue[str] = asyncio.Queue()
        for task_id in pending:
            self._watch(task_id, ready.put_nowait)
        try:
            await self._ensure_subscribed()
            to_check = list(pending)
            while pending:
                for task_id, result in (await self._collect(to_check)).items():
                    if task_id in pending:
                        del pending[task_id]
                        self._unwatch(task_id, ready.put_nowait)
                        yield result
                if not pending:
                    return
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    first = await asyncio.wait_for(ready.get(), remaining)
                except TimeoutError:
                    for result in (await self.fetch_many(list(pending))).values():
                        yield result
                    return
                batch = {first}
                while not ready.empty():
                    batch.add(ready.get_nowait())
                to_check = [task_id for task_id in batch if task_id in pending]
        finally:
            for task_id in pending:
                self._unwatch(task_id, ready.put_nowait)

    async def aclose(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._subscribed.clear()


def _raise_if_cancelling(exc: BaseException | None) -> None:
    """A cancelled read does not always raise CancelledError: redis-py (8.2) at times swallows the
    cancel of a blocking XREAD and returns its reply when the block ends, or the cancel surfaces as a
    connection error. A loop that reads on would never end (a dashboard's shutdown hung on its event
    feed under load). Raise the cancellation the task is still under."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


async def _last_event_id(client: aioredis.Redis, stream: str) -> str:
    async with redis_errors_async(client):
        newest = await client.xrevrange(stream, count=1)
    if not newest:
        return "0-0"
    raw_id = newest[0][0]
    return raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)


def check_event_id(from_id: str | None) -> str | None:
    """``from_id`` if it is an event id ``listen_events`` can resume after (None: from now), else
    InvalidArgument. Checked before any Redis call: Redis would refuse it on every read."""
    if from_id is None:
        return None
    match = _EVENT_ID_RE.fullmatch(from_id) if isinstance(from_id, str) else None
    if match is None or any(int(part) >= 2**64 for part in match.groups() if part is not None):
        raise InvalidArgument(
            f"from_id {reprlib.repr(from_id)} is not an event id (like 1795915811595-0; 0: the oldest kept)",
            field="from_id",
        )
    return from_id


async def listen_events(
    client: aioredis.Redis, keys: Keys, from_id: str | None = None
) -> AsyncGenerator[tuple[str, Result], None]:
    """Every final result as (event id, Result), from the entry after ``from_id`` (None: from now).

    A broken connection is retried with backoff, resuming after the last entry yielded; after
    ``RECONNECT_GIVE_UP_S`` without success RedisUnavailable is raised. Entries already trimmed from
    the capped stream (``QueueConfig.events_maxlen``) cannot be replayed. A malformed ``from_id`` is
    InvalidArgument.
    """
    check_event_id(from_id)
    last_id = from_id if from_id is not None else await _last_event_id(client, keys.events)
    backoff_s = 0.05
    down_since: float | None = None
    while True:
        try:
            reply: Any = await client.xread({keys.events: last_id}, count=100, block=int(BLOCK_MAX_S * 1000))
        except _CONNECTION_ERRORS as exc:
            _raise_if_cancelling(exc)
            now = time.monotonic()
            down_since = down_since if down_since is not None else now
            if now - down_since > RECONNECT_GIVE_UP_S:
                raise RedisUnavailable(
                    f"events stream unreachable for {RECONNECT_GIVE_UP_S:.0f} s: {exc}"
                ) from exc
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, 2.0)
            continue
        except ResponseError as exc:
            _raise_if_cancelling(exc)
            log.error("cannot read %s: %s", keys.events, exc)
            await asyncio.sleep(BLOCK_MAX_S)
            continue
        _raise_if_cancelling(None)  # a cancel redis-py swallowed in the read: it returned as if not
        down_since, backoff_s = None, 0.05
        for _stream, entries in reply or ():
            for raw_id, fields in entries:
                last_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                raw = fields.get(b"result", fields.get("result"))
                task_id = fields.get(b"id", fields.get("id", b"?"))
                result = decode_result(raw, task_id.decode() if isinstance(task_id, bytes) else str(task_id))
                if result is not None:
                    yield last_id, result

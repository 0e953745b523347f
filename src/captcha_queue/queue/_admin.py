"""Inspection and operations: stats, the dead-letter queue, the data-set epoch."""

from __future__ import annotations

import math
import uuid
from typing import Any

import msgspec

from ..models import PRIORITIES, DataLoss, DeadLetter, Stats, Task
from ..store.connection import redis_errors_async
from ..store.scripts import Code
from ._core import QueueCore, as_str, log
from ._submission import MAX_ATTEMPTS_LIMIT, state_open

__all__ = ["AdminAPI"]

_COUNTERS = ("completed", "failed", "dead", "cancelled", "expired", "submitted")
_encoder = msgspec.json.Encoder()


def _int(value: Any) -> int:
    """A counter as stored; one someone overwrote with something else reads as 0 (the scripts that
    count refuse to run until it is repaired: see lua/includes/util.lua)."""
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _limit(value: Any) -> int | None:
    """The solver slot limit as stored, or None when absent or not a finite number."""
    try:
        limit = float(as_str(value)) if value is not None else math.nan
    except ValueError:
        return None
    return int(limit) if math.isfinite(limit) else None


class AdminAPI(QueueCore):
    """Stats and dead-letter operations (mixed into AsyncCaptchaQueue)."""

    #: (epoch, submitted watermark, finished) at the last check_data_loss call.
    _data_seen: tuple[str | None, int, int] | None = None

    async def stats(self, account: str = "default") -> Stats:
        """A snapshot of the namespace in one round trip (``account``: whose solver slots to count)."""
        names = self.scripts.readStats.key_names
        reply = await self._script("readStats", keys=[self.keys.named(k, account) for k in names])
        counters = dict(
            zip(_COUNTERS, (list(reply[5]) + [None] * len(_COUNTERS))[: len(_COUNTERS)], strict=True)
        )
        oldest_ms = int(reply[7])
        return Stats(
            queued={priority: int(reply[i]) for i, priority in enumerate(PRIORITIES)},
            delayed=int(reply[3]),
            in_flight=int(reply[4]),
            completed=_int(counters["completed"]),
            failed=_int(counters["failed"]),
            dead=_int(counters["dead"]),
            cancelled=_int(counters["cancelled"]),
            expired=_int(counters["expired"]),
            workers=int(reply[6]),
            oldest_queued_age_s=oldest_ms / 1000 if oldest_ms >= 0 else None,
            paused=as_str(reply[8]) if reply[8] is not None else None,
            solver_slots_used=int(reply[9]),
            solver_slots_limit=_limit(reply[10]),
            submitted=_int(counters["submitted"]),
            dead_letters=int(reply[11]),
            epoch=as_str(reply[12]) if reply[12] is not None else None,
        )

    async def check_data_loss(self) -> DataLoss | None:
        """Compare the data set with the one this object saw at its previous call (one round trip).

        Returns a DataLoss when the epoch changed or vanished since: Redis restarted empty, was
        flushed or failed over to an empty replica. The first call only records what it sees.
        Workers call this every renew period and log the loss at CRITICAL; producers may too.
        """
        stats = await self.stats()
        finished = stats.completed + stats.failed + stats.cancelled + stats.expired
        previous = self._data_seen
        self._data_seen = (stats.epoch, stats.submitted, finished)
        if previous is None or previous[0] is None or previous[0] == stats.epoch:
            return None
        return DataLoss(
            epoch_before=previous[0],
            epoch_after=stats.epoch,
            submitted_before=previous[1],
            finished_before=previous[2],
        )

    async def epoch(self) -> str:
        """The random id of this Redis data set, written on first use. A different answer later
        means Redis lost its data (restarted empty); compare ``Stats.submitted`` to count the loss."""
        candidate = uuid.uuid4().hex
        async with redis_errors_async(self.client):
            previous = await self.client.set(self.keys.epoch, candidate, nx=True, get=True)
        return as_str(previous) if previous is not None else candidate

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters first, up to ``limit``."""
        if limit < 1:
            return []
        async with redis_errors_async(self.client):
            ids: Any = await self.client.zrevrange(self.keys.dead_index, 0, limit - 1)
            if not ids:
                return []
            raws = await self.client.hmget(self.keys.dead, ids)
        letters = []
        for raw_id, raw in zip(ids, raws, strict=True):
            letter = self._decode_dead(raw, as_str(raw_id))
            if letter is not None:
                letters.append(letter)
        return letters

    async def dead_letter(self, task_id: str) -> DeadLetter | None:
        """One dead letter, or None."""
        async with redis_errors_async(self.client):
            raw = await self.client.hget(self.keys.dead, task_id)
        return self._decode_dead(raw, task_id)

    async def requeue(self, task_id: str) -> bool:
        """Give a dead-lettered task a new run under the same id (fresh attempts, no deadline, tail of
        its priority). False when there is no such dead letter or its task cannot be read."""
        letter = await self.dead_letter(task_id)
        if letter is None:
            return False
        task = letter.task
        if task is None and letter.raw is not None:
            try:
                task = msgspec.json.decode(letter.raw, type=Task)
            except ValueError:
                task = None
        if task is None or task.id != task_id or not 1 <= task.max_attempts <= MAX_ATTEMPTS_LIMIT:
            log.warning("dead letter %s has no readable task: not requeued", task_id)
            return False
        # An operator's requeue starts over: the old deadline would expire it at once.
        task = msgspec.structs.replace(task, expires_at=None)
        metadata_json = _encoder.encode(task.metadata) if task.metadata is not None else None
        reply = await self._script(
            "requeueDead",
            task_id,
            _encoder.encode(task),
            state_open(task, metadata_json),
            task.priority,
            task.idempotency_key or "",
        )
        if int(reply[0]) == Code.NOT_FOUND:
            return False
        self._check(reply, task_id)
        return True

    async def requeue_all(self) -> int:
        """Requeue every dead letter; returns how many were requeued."""
        requeued = 0
        skipped: set[str] = set()
        while True:
            async with redis_errors_async(self.client):
                ids = await self.client.zrange(self.keys.dead_index, 0, 99 + len(skipped))
            batch = [as_str(i) for i in ids if as_str(i) not in skipped]
            if not batch:
                return requeued
            for task_id in batch:
                if await self.requeue(task_id):
                    requeued += 1
                else:
                    skipped.add(task_id)

    async def purge_dead(self) -> int:
        """Delete every dead letter; returns how many there were."""
        reply = await self._script("purgeDead")
        self._check(reply, "-")
        return int(reply[1])

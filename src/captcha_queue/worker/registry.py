"""Who is working: each worker process registers itself with a TTL and renews it with its leases.

``keys.workers`` (ZSET worker id -> heartbeat deadline, server-time ms) says who is alive;
``keys.worker_info`` (HASH worker id -> JSON) says what each one is: host, pid, start time, tasks in
flight, version, concurrency, solver account. A process that dies stops renewing and drops out of
the live set after ``ttl_s``; registrations that lapsed long ago are deleted by later heartbeats.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from typing import Any

import msgspec
import redis.asyncio as aioredis

from ..store.connection import redis_errors_async
from ..store.keys import Keys
from ..store.scripts import load_scripts

__all__ = ["WorkerInfo", "WorkerRegistry", "list_workers", "new_worker_id"]

#: Registrations that lapsed this long ago are deleted (dead workers stay visible for a while).
FORGET_AFTER_S = 3600.0


def new_worker_id() -> str:
    """``host:pid:random``: readable in the CLI, unique across restarts and machines."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class WorkerInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """One worker process as it registered itself."""

    id: str
    host: str
    pid: int
    started_at: float
    version: str
    in_flight: int = 0
    concurrency: int | None = None
    account: str | None = None
    solver: str | None = None
    key: str | None = None  # the fingerprint of the solver's API key (never the key)
    heartbeat_deadline_ms: int | None = None  # filled in by list_workers


class WorkerRegistry:
    """The registration of one worker process."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        worker_id: str,
        *,
        ttl_s: float = 30.0,
        concurrency: int | None = None,
        account: str | None = None,
        solver: str | None = None,
        key: str | None = None,
    ) -> None:
        from .. import __version__

        self._client = client
        self._keys = keys
        self._script = load_scripts().heartbeatWorker
        self.ttl_s = ttl_s
        self.info = WorkerInfo(
            id=worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=time.time(),
            version=__version__,
            concurrency=concurrency,
            account=account,
            solver=solver,
            key=key,
        )

    async def heartbeat(self, in_flight: int) -> int:
        """Register or renew, with the current in-flight count. Returns the number of live workers."""
        info = msgspec.structs.replace(self.info, in_flight=in_flight)
        payload = msgspec.json.encode(info).decode()
        return await self._call(payload)

    async def unregister(self) -> None:
        await self._call("")

    async def _call(self, payload: str) -> int:
        args = [self.info.id, int(self.ttl_s * 1000), payload, int(FORGET_AFTER_S * 1000)]
        async with redis_errors_async(self._client):
            reply = await self._script(self._client, [self._keys.workers, self._keys.worker_info], args)
        return int(reply[1])


async def list_workers(client: aioredis.Redis, keys: Keys, *, include_dead: bool = False) -> list[WorkerInfo]:
    """Live workers (and with ``include_dead``, lapsed ones not yet forgotten), by id."""
    async with redis_errors_async(client):
        seconds, micros = await client.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        deadlines: Any = await client.zrange(keys.workers, 0, -1, withscores=True)
        ids = [_text(member) for member, score in deadlines if include_dead or score > now_ms]
        raw = await client.hmget(keys.worker_info, ids) if ids else []
    by_id = {_text(member): int(score) for member, score in deadlines}
    workers = []
    for worker_id, blob in zip(ids, raw, strict=True):
        try:
            info = msgspec.json.decode(blob, type=WorkerInfo) if blob else None
        except msgspec.DecodeError:
            info = None
        if info is None:
            info = WorkerInfo(id=worker_id, host="?", pid=0, started_at=0.0, version="?")
        workers.append(msgspec.structs.replace(info, heartbeat_deadline_ms=by_id[worker_id]))
    return sorted(workers, key=lambda w: w.id)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

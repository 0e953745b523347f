"""Who is working: each worker process registers itself with a TTL and renews it with its leases.

``keys.workers`` (ZSET worker id -> heartbeat deadline, server-time ms) says who is alive;
``keys.worker_info`` (HASH worker id -> JSON) says what each one is: host, pid, start time, tasks in
flight, version, concurrency, solver account, and the account's last known balance (``balance``, as
the service told it, and ``balance_at``, when: ``record_balance``). A process that dies stops
renewing and drops out of the live set after ``ttl_s``; registrations that lapsed long ago are
deleted by later heartbeats. Registrations are written and read through the queue's admin API
(``heartbeat_worker``, ``unregister_worker``, ``workers``).

Each heartbeat also answers whether an operator asked this worker to drain (``drain_worker``):
the first time it does, ``on_drain`` is called with the request (the worker stops as on SIGTERM).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from ..models import WorkerDrain
    from ..queue import AsyncCaptchaQueue

__all__ = ["WorkerInfo", "WorkerRegistry", "new_worker_id"]


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
    balance: float | None = None  # the account's balance when it last asked (the service's units)
    balance_at: float | None = None  # when (unix time, s)


class WorkerRegistry:
    """The registration of one worker process."""

    def __init__(
        self,
        queue: AsyncCaptchaQueue,
        worker_id: str,
        *,
        ttl_s: float = 30.0,
        concurrency: int | None = None,
        account: str | None = None,
        solver: str | None = None,
        key: str | None = None,
        on_drain: Callable[[WorkerDrain], None] | None = None,
    ) -> None:
        from .. import __version__

        self._queue = queue
        self.ttl_s = ttl_s
        self.on_drain = on_drain
        #: The drain request this worker got with a heartbeat (None: none yet).
        self.drain: WorkerDrain | None = None
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
        live, drain = await self._queue.heartbeat_worker(
            self.info.id, msgspec.to_builtins(info), ttl_s=self.ttl_s
        )
        if drain is not None and self.drain is None:
            self.drain = drain
            if self.on_drain is not None:
                self.on_drain(drain)
        return live

    def record_balance(self, balance: float) -> None:
        """The account's balance as the service just told it: sent with the next heartbeat (the
        gateway's ``getbalance`` answers the fleet's view from these, ``AccountsAPI.account_balances``)."""
        self.info = msgspec.structs.replace(self.info, balance=balance, balance_at=round(time.time(), 3))

    async def unregister(self) -> None:
        await self._queue.unregister_worker(self.info.id)

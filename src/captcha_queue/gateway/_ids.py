"""Numeric task ids, minted from a Redis counter a block at a time.

Clients of the JSON API decode ``taskId`` into a number (Go ``int``/``float64``, C# ``int``, JavaScript
``Number``), and the legacy services document ids as numeric (``ERROR_WRONG_ID_FORMAT``). So every task
a gateway submits is given a decimal id: ``ID_BASE`` plus a value of the namespace's counter
(``Keys.gateway_ids``), which each process takes ``BLOCK`` at a time (one ``INCRBY`` per block), so ids
are unique across any number of gateways. They stay below 2**31 for the first two billion tasks of a
namespace, and exact in a float64 for ever.
"""

from __future__ import annotations

import asyncio
from collections import deque

import redis.asyncio as aioredis

from ..store.connection import redis_errors_async
from ..store.keys import Keys

__all__ = ["BLOCK", "ID_BASE", "IdMinter", "is_task_id"]

ID_BASE = 100_000_000
BLOCK = 100


def is_task_id(text: str) -> bool:
    """Whether ``text`` has the form of an id a gateway mints (decimal digits, no sign)."""
    return 0 < len(text) <= 19 and text.isascii() and text.isdigit()


class IdMinter:
    """Task ids for one namespace (one per process and namespace)."""

    def __init__(self, client: aioredis.Redis, keys: Keys, *, block: int = BLOCK) -> None:
        self.client = client
        self.keys = keys
        self.block = block
        self._free: deque[int] = deque()
        self._lock = asyncio.Lock()

    async def next_id(self) -> str:
        if not self._free:
            async with self._lock:
                if not self._free:
                    async with redis_errors_async(self.client):
                        end = int(await self.client.incrby(self.keys.gateway_ids, self.block))
                    self._free.extend(range(end - self.block + 1, end + 1))
        return str(ID_BASE + self._free.popleft())

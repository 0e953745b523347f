"""Client keys: what a scraper sends as ``key`` / ``clientKey`` instead of the provider's key.

A key is 32 random hex characters, shown once when it is created. Redis stores only its SHA-256
(``GatewayKeys.clients``: digest -> record), so a copy of Redis gives no usable key. Its record names
the namespace its tasks go to, their default priority, and the key's optional limits. The key's public
name (``id``: the first 16 hex digits of the digest) is what the CLI lists and revokes.

Lookups are cached in the process for ``ttl_s`` (found and not found alike), so a poll costs one Redis
read, not two: a revoked key keeps working for at most ``ttl_s`` on a process that used it just before.
"""

from __future__ import annotations

import hashlib
import math
import reprlib
import secrets
import time
from typing import Any

import msgspec
import redis.asyncio as aioredis

from ..errors import InvalidArgument
from ..models import PRIORITIES, Priority
from ..store.connection import redis_errors_async
from ..store.keys import GatewayKeys, validate_account, validate_namespace

__all__ = [
    "KEY_CHARS",
    "ClientKey",
    "KeyCache",
    "create_key",
    "key_digest",
    "list_keys",
    "revoke_key",
]

KEY_CHARS = 32
_ID_CHARS = 16
_GATEWAY_KEYS = GatewayKeys()


class ClientKey(msgspec.Struct, frozen=True, omit_defaults=True):
    """A client key's record (never the key itself)."""

    id: str
    namespace: str
    priority: Priority = "normal"
    rate_per_s: float | None = None
    max_in_flight: int | None = None
    account: str = "default"
    label: str = ""
    created_at: float = 0.0


_decoder = msgspec.json.Decoder(ClientKey)


def key_digest(key: str) -> str:
    """The SHA-256 (hex) a key is stored under."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _check_limits(priority: str, rate_per_s: float | None, max_in_flight: int | None, label: str) -> None:
    if priority not in PRIORITIES:
        raise InvalidArgument(f"priority must be one of {', '.join(PRIORITIES)}", field="priority")
    if rate_per_s is not None and (
        isinstance(rate_per_s, bool) or not math.isfinite(rate_per_s) or rate_per_s <= 0
    ):
        raise InvalidArgument("rate_per_s must be a finite number above 0", field="rate_per_s")
    if max_in_flight is not None and (isinstance(max_in_flight, bool) or max_in_flight < 1):
        raise InvalidArgument("max_in_flight must be at least 1", field="max_in_flight")
    if len(label) > 200 or not label.isprintable():
        raise InvalidArgument(f"label {reprlib.repr(label)} must be printable, 200 characters at most")


async def create_key(
    client: aioredis.Redis,
    *,
    namespace: str,
    priority: str = "normal",
    rate_per_s: float | None = None,
    max_in_flight: int | None = None,
    account: str = "default",
    label: str = "",
) -> tuple[str, ClientKey]:
    """A new key and its record; the key is returned here and never again."""
    validate_namespace(namespace)
    validate_account(account)
    _check_limits(priority, rate_per_s, max_in_flight, label)
    key = secrets.token_hex(KEY_CHARS // 2)
    digest = key_digest(key)
    record = ClientKey(
        id=digest[:_ID_CHARS],
        namespace=namespace,
        priority=priority,  # type: ignore[arg-type]
        rate_per_s=rate_per_s,
        max_in_flight=max_in_flight,
        account=account,
        label=label,
        created_at=round(time.time(), 3),
    )
    async with redis_errors_async(client):
        await client.hset(_GATEWAY_KEYS.clients, digest, msgspec.json.encode(record))
    return key, record


async def list_keys(client: aioredis.Redis) -> list[ClientKey]:
    """Every key's record, oldest first (unreadable entries left out)."""
    async with redis_errors_async(client):
        raw: dict[Any, Any] = await client.hgetall(_GATEWAY_KEYS.clients)
    records = []
    for value in raw.values():
        try:
            records.append(_decoder.decode(value))
        except msgspec.DecodeError:
            continue
    return sorted(records, key=lambda r: (r.created_at, r.id))


async def revoke_key(client: aioredis.Redis, key_id: str) -> bool:
    """Remove the key whose public id is ``key_id``; False when there is none."""
    if not isinstance(key_id, str) or not key_id:
        raise InvalidArgument("a key id is needed (captcha-queue gateway keys list)", field="key_id")
    async with redis_errors_async(client):
        digests = [
            d.decode() if isinstance(d, bytes) else str(d) for d in await client.hkeys(_GATEWAY_KEYS.clients)
        ]
        matches = [d for d in digests if d[:_ID_CHARS] == key_id]
        if not matches:
            return False
        await client.hdel(_GATEWAY_KEYS.clients, *matches)
    return True


class KeyCache:
    """Key -> record lookups, each kept ``ttl_s`` in this process (see the module docstring)."""

    def __init__(self, client: aioredis.Redis, ttl_s: float, *, max_entries: int = 10_000) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, ClientKey | None]] = {}

    async def get(self, key: str) -> ClientKey | None:
        """The record of ``key``, or None when it does not exist (or was revoked)."""
        now = time.monotonic()
        cached = self._entries.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with redis_errors_async(self.client):
            raw = await self.client.hget(_GATEWAY_KEYS.clients, key_digest(key))
        record: ClientKey | None = None
        if raw is not None:
            try:
                record = _decoder.decode(raw)
            except msgspec.DecodeError:
                record = None
        if self.ttl_s > 0:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # bounded: a flood of made-up keys cannot grow it
            self._entries[key] = (now + self.ttl_s, record)
        return record

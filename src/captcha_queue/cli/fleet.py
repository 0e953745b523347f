"""The fleet keys as the command line sees them: live workers, and the fleet-wide pause.

The producer side never imports ``worker/``: the keys (``docs/design.md``, "Fleet keys") are the
contract, read and written here directly.

- ``keys.workers`` ZSET worker id -> heartbeat deadline (ms); ``keys.worker_info`` HASH id -> JSON.
- ``keys.paused`` HASH ``reason``, ``code``, ``since_ms``, ``until_ms`` (absent = until resumed).
- ``keys.account_paused(ref)`` HASH: one solver account's pause, the same fields plus ``worker``,
  ``account`` and ``key`` (the key's fingerprint); ``keys.paused_accounts`` SET indexes the refs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from ..store.connection import redis_errors_async

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ..store.keys import Keys

__all__ = [
    "OPERATOR_CODE",
    "AccountPause",
    "Pause",
    "WorkerEntry",
    "read_account_pauses",
    "read_pause",
    "read_workers",
    "resume",
    "set_pause",
]

#: The ``code`` of a pause an operator set (the account breaker writes the service's error code).
OPERATOR_CODE = "OPERATOR"


class WorkerEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """One registered worker: its heartbeat deadline and whatever it registered about itself."""

    id: str
    alive: bool
    heartbeat_deadline_ms: int
    heartbeat_in_s: float  # negative when the deadline has passed
    info: dict[str, Any] = {}


class Pause(msgspec.Struct, frozen=True, omit_defaults=True):
    """The fleet-wide pause, as stored."""

    reason: str
    code: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def active(self, now_ms: int) -> bool:
        return self.until_ms is None or self.until_ms > now_ms


class AccountPause(msgspec.Struct, frozen=True, omit_defaults=True):
    """One solver account's pause: only workers of that account (name and key) stop."""

    ref: str  # the account name and the key's fingerprint, as workers report them: name/fingerprint
    reason: str
    code: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    worker: str | None = None  # the worker that paused it
    account: str | None = None
    key: str | None = None  # the fingerprint of the account's API key (never the key)

    def matches(self, which: str) -> bool:
        """``which`` names this account: its ref, its name or its key's fingerprint."""
        return which in (self.ref, self.account, self.key)


async def server_time_ms(client: aioredis.Redis) -> int:
    """Redis server time in milliseconds: the clock leases and heartbeats are written in."""
    async with redis_errors_async(client):
        seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def read_workers(client: aioredis.Redis, keys: Keys) -> list[WorkerEntry]:
    """Every registered worker, live ones first, each with its registration JSON when readable."""
    now_ms = await server_time_ms(client)
    async with redis_errors_async(client):
        deadlines: Any = await client.zrange(keys.workers, 0, -1, withscores=True)
        raw_info: dict[Any, Any] = await client.hgetall(keys.worker_info)
    info_by_id = {_text(k): v for k, v in raw_info.items()}
    entries = []
    for raw_id, score in deadlines:
        worker_id = _text(raw_id)
        deadline_ms = int(score)
        entries.append(
            WorkerEntry(
                id=worker_id,
                alive=deadline_ms > now_ms,
                heartbeat_deadline_ms=deadline_ms,
                heartbeat_in_s=round((deadline_ms - now_ms) / 1000, 3),
                info=_decode_info(info_by_id.get(worker_id)),
            )
        )
    entries.sort(key=lambda e: (not e.alive, e.id))
    return entries


def _decode_info(raw: bytes | str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        decoded = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return {"raw": _text(raw)[:200]}
    return decoded if isinstance(decoded, dict) else {"raw": decoded}


async def read_pause(client: aioredis.Redis, keys: Keys) -> tuple[Pause | None, int]:
    """The stored pause (None when there is none) and the server time it was read at."""
    now_ms = await server_time_ms(client)
    async with redis_errors_async(client):
        raw: dict[Any, Any] = await client.hgetall(keys.paused)
    if not raw:
        return None, now_ms
    fields = {_text(k): _text(v) for k, v in raw.items()}
    return (
        Pause(
            reason=fields.get("reason", ""),
            code=fields.get("code") or None,
            since_ms=_int_or_none(fields.get("since_ms")),
            until_ms=_int_or_none(fields.get("until_ms")),
        ),
        now_ms,
    )


async def read_account_pauses(client: aioredis.Redis, keys: Keys) -> tuple[list[AccountPause], int]:
    """Every account pause in force (a timed one past its end is left out), and the server time."""
    now_ms = await server_time_ms(client)
    async with redis_errors_async(client):
        refs = sorted(_text(r) for r in await client.smembers(keys.paused_accounts))
        async with client.pipeline(transaction=False) as pipe:
            for ref in refs:
                pipe.hgetall(keys.account_paused(ref))
            stored: list[dict[Any, Any]] = await pipe.execute() if refs else []
    pauses = []
    for ref, raw in zip(refs, stored, strict=True):
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if not fields:
            continue
        pause = AccountPause(
            ref=ref,
            reason=fields.get("reason", ""),
            code=fields.get("code") or None,
            since_ms=_int_or_none(fields.get("since_ms")),
            until_ms=_int_or_none(fields.get("until_ms")),
            worker=fields.get("worker") or None,
            account=fields.get("account") or None,
            key=fields.get("key") or None,
        )
        if pause.until_ms is None or pause.until_ms > now_ms:
            pauses.append(pause)
    return pauses, now_ms


async def set_pause(client: aioredis.Redis, keys: Keys, reason: str, *, for_s: float | None = None) -> Pause:
    """Pause claiming fleet-wide (replacing any pause in place); ``for_s`` ends it by itself."""
    now_ms = await server_time_ms(client)
    pause = Pause(
        reason=reason,
        code=OPERATOR_CODE,
        since_ms=now_ms,
        until_ms=now_ms + int(for_s * 1000) if for_s is not None else None,
    )
    mapping: dict[Any, Any] = {"reason": pause.reason, "code": OPERATOR_CODE, "since_ms": str(now_ms)}
    if pause.until_ms is not None:
        mapping["until_ms"] = str(pause.until_ms)
    async with redis_errors_async(client), client.pipeline(transaction=True) as pipe:
        pipe.delete(keys.paused)
        pipe.hset(keys.paused, mapping=mapping)
        if pause.until_ms is not None:
            # The claim script ignores a pause past until_ms; the expiry only tidies the key away.
            pipe.pexpireat(keys.paused, pause.until_ms)
        await pipe.execute()
    return pause


async def resume(
    client: aioredis.Redis, keys: Keys, account: str | None = None
) -> tuple[Pause | None, list[AccountPause]]:
    """Lift the fleet-wide pause and every account's (``account``: only the pauses of that account,
    by ref, name or key fingerprint). Returns what was lifted."""
    pause, _ = await read_pause(client, keys)
    accounts, _ = await read_account_pauses(client, keys)
    if account is not None:
        pause = None
        accounts = [a for a in accounts if a.matches(account)]
    async with redis_errors_async(client):
        refs = [_text(r) for r in await client.smembers(keys.paused_accounts)]
        if account is not None:
            refs = [a.ref for a in accounts]
        async with client.pipeline(transaction=True) as pipe:
            if account is None:
                pipe.delete(keys.paused)
            for ref in refs:
                pipe.delete(keys.account_paused(ref))
                pipe.srem(keys.paused_accounts, ref)
            # Arm the wake marker (as a submit does) so a claimer blocked on it looks again now.
            pipe.lpush(keys.wake, "1")
            pipe.ltrim(keys.wake, 0, 0)
            await pipe.execute()
    return pause, accounts


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(float(value)) if value else None
    except ValueError:
        return None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

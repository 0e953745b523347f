"""Where a secret could leak, searched exhaustively: every Redis key and value, log files, metrics.

Redis is read twice over: every key name from SCAN, every value read by its type (strings, hash
fields and values, list items, set members, sorted-set members, stream entries), and the DUMP of
every key (the server should run with ``rdbcompression no`` so DUMP bodies are not LZF-compressed).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

__all__ = ["scan_files", "scan_metrics", "scan_redis", "scan_text"]


def _variants(secret: str) -> list[bytes]:
    # The key itself, and the forms an encoder might give it (URL-encoded is the same for [A-Za-z0-9]).
    raw = secret.encode()
    return [raw, raw.lower(), raw.upper()]


def scan_text(blob: bytes, secret: str) -> bool:
    return any(v in blob for v in _variants(secret))


async def _values(redis_client: aioredis.Redis, key: bytes, kind: str) -> list[bytes]:
    client: Any = redis_client  # redis-py's reply types are unions of bytes and str
    out: list[Any] = []
    if kind == "string":
        value = await client.get(key)
        out.append(value or b"")
    elif kind == "hash":
        for field, value in (await client.hgetall(key)).items():
            out += [field, value]
    elif kind == "list":
        out += await client.lrange(key, 0, -1)
    elif kind == "set":
        out += list(await client.smembers(key))
    elif kind == "zset":
        out += [member for member, _ in await client.zrange(key, 0, -1, withscores=True)]
    elif kind == "stream":
        for entry_id, fields in await client.xrange(key, "-", "+"):
            out.append(entry_id)
            for field, value in fields.items():
                out += [field, value]
    return [v if isinstance(v, bytes) else str(v).encode() for v in out]


async def scan_redis(client: aioredis.Redis, secret: str) -> tuple[int, list[str]]:
    """Search every key of the server (all of db 0). Returns (keys searched, where the secret was)."""
    found: list[str] = []
    count = 0
    async for key in client.scan_iter(count=1000):
        count += 1
        name = key if isinstance(key, bytes) else str(key).encode()
        if scan_text(name, secret):
            found.append(f"key name {name[:80]!r}")
        kind_raw: Any = await client.type(key)
        kind = kind_raw.decode() if isinstance(kind_raw, bytes) else str(kind_raw)
        for value in await _values(client, name, kind):
            if scan_text(value, secret):
                found.append(f"value of {name[:80]!r} ({kind})")
                break
        dump = await client.dump(key)
        if dump and scan_text(dump, secret):
            found.append(f"DUMP of {name[:80]!r}")
    return count, found


def scan_files(paths: Iterable[Path], secret: str) -> tuple[int, list[str]]:
    """Search files (logs). Returns (bytes searched, the files and line numbers where it was)."""
    found: list[str] = []
    size = 0
    for path in paths:
        data = path.read_bytes()
        size += len(data)
        for number, line in enumerate(data.splitlines(), 1):
            if scan_text(line, secret):
                found.append(f"{path.name}:{number}")
    return size, found


async def scan_metrics(ports: Iterable[int], secret: str) -> tuple[int, list[str]]:
    """Fetch ``/metrics`` from each port and search it. Returns (bytes searched, where found)."""
    found: list[str] = []
    size = 0
    async with aiohttp.ClientSession() as http:
        for port in ports:
            try:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    body = await resp.read()
            except aiohttp.ClientError:
                continue  # a worker killed (or just restarted) by the scenario serves nothing
            size += len(body)
            if scan_text(body, secret):
                found.append(f"/metrics on port {port}")
    return size, found

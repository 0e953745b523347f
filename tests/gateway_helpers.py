"""Shared by the gateway tests: a gateway served in the test's loop, client keys, a tiny PNG."""

from __future__ import annotations

import base64
import contextlib
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from captcha_queue.gateway import GatewaySettings, RunningGateway, create_key, run_gateway


def png(width: int = 30, height: int = 10) -> bytes:
    """A valid PNG of the given size (above the 100-byte minimum)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(range(width % 256)) * 0 + b"\x7f" * (width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 0))
        + chunk(b"IEND", b"")
    )


def png_b64() -> str:
    return base64.b64encode(png()).decode()


@contextlib.asynccontextmanager
async def serve(client: aioredis.Redis, redis_url: str, **changes: Any) -> AsyncIterator[RunningGateway]:
    """A gateway on a free loopback port, in this test's event loop, on the test's Redis client."""
    settings = GatewaySettings(port=0, redis_url=redis_url, **changes)
    async with run_gateway(settings, client) as gateway:
        yield gateway


async def new_key(client: aioredis.Redis, namespace: str, **options: Any) -> str:
    key, _ = await create_key(client, namespace=namespace, **options)
    return key

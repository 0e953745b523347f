"""The one place where redis-py is configured and its errors become ours.

Client settings that hold under load (measured with redis-py 8.1 and Redis 7.0): a bounded
*blocking* pool (callers wait for a free connection instead of opening thousands), an explicit
``socket_timeout`` that every blocking command (claim, waiters) stays well under, and no silent
client-side retries of commands (a retried EVALSHA could apply a state transition twice).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..errors import CaptchaQueueError, RedisCommandError, RedisUnavailable
from .server import check_version, redact_url

__all__ = [
    "BLOCK_MAX_S",
    "SOCKET_TIMEOUT_S",
    "check_server",
    "make_client",
    "redis_errors",
    "redis_errors_async",
]

#: Read timeout for every socket. Blocking commands never wait longer than BLOCK_MAX_S.
SOCKET_TIMEOUT_S = 15.0
#: The longest any blocking command (BLPOP in claim, BLPOP/XREAD in waiters) waits server-side.
BLOCK_MAX_S = 5.0


def make_client(
    url: str,
    *,
    max_connections: int = 32,
    socket_timeout_s: float = SOCKET_TIMEOUT_S,
    pool_timeout_s: float = 30.0,
    client_name: str | None = None,
) -> aioredis.Redis:
    """An asyncio client with a bounded blocking pool and explicit timeouts (``client_name``: what
    each of its connections is called in CLIENT LIST)."""
    named = {"client_name": client_name} if client_name is not None else {}
    try:
        pool = BlockingConnectionPool.from_url(
            url,
            **named,
            max_connections=max_connections,
            timeout=pool_timeout_s,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=5.0,
            socket_keepalive=True,
            health_check_interval=30,
            retry_on_timeout=False,
        )
    except ValueError as exc:
        raise RedisUnavailable(f"bad Redis URL {redact_url(url)}: {exc}") from exc
    # No client-side retries: a retried EVALSHA could apply a transition twice.
    client = aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
    # The client owns its pool: aclose() must disconnect it (redis-py leaves a passed-in pool open).
    client.auto_close_connection_pool = True
    return client


async def check_server(client: aioredis.Redis) -> None:
    """Ping the server and refuse versions older than Redis 7.0 / Valkey 7.2."""
    async with redis_errors_async(client):
        info = await client.info("server")
    check_version(info)


def _describe(client: aioredis.Redis | None) -> str:
    if client is None:
        return "Redis"
    kwargs = client.connection_pool.connection_kwargs
    host = kwargs.get("host") or kwargs.get("path") or "?"
    port = kwargs.get("port")
    return f"Redis at {host}:{port}" if port else f"Redis at {host}"


def _translate(exc: BaseException, client: aioredis.Redis | None) -> RedisUnavailable:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return RedisUnavailable(f"cannot reach {_describe(client)}: {first}")


def _closed_transport(exc: RuntimeError) -> bool:
    """uvloop raises RuntimeError, not an OSError, when redis-py writes to a connection the peer
    already closed ("unable to perform operation on <TCPTransport closed=True ...>; the handler is
    closed"); redis-py disconnects and re-raises it. It is a lost connection like any other."""
    text = str(exc)
    return "handler is closed" in text or "closed=True" in text


def _refused(exc: redis.ResponseError) -> RedisCommandError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if first.startswith("WRONGTYPE"):
        first += " (a key of this namespace was overwritten with another type by someone else)"
    return RedisCommandError(f"Redis refused a command: {first}")


def _ours(exc: BaseException, client: aioredis.Redis | None) -> CaptchaQueueError | None:
    """Our error for a redis-py one (None: not ours to translate): connection-level errors become
    RedisUnavailable, refusals (WRONGTYPE, NOPERM, ...) RedisCommandError."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError):
        return _translate(exc, client)
    if isinstance(exc, redis.ResponseError):
        return _refused(exc)
    if isinstance(exc, RuntimeError) and _closed_transport(exc):
        return _translate(exc, client)
    return None


@contextlib.contextmanager
def redis_errors(client: aioredis.Redis | None = None) -> Iterator[None]:
    """Translate redis-py errors into ours (sync code paths); see ``_ours``."""
    try:
        yield
    except (redis.RedisError, OSError, RuntimeError) as exc:
        ours = _ours(exc, client)
        if ours is None:
            raise
        raise ours from exc


@contextlib.asynccontextmanager
async def redis_errors_async(client: aioredis.Redis | None = None) -> AsyncIterator[None]:
    """Translate redis-py errors into ours; see ``_ours``."""
    try:
        yield
    except (redis.RedisError, OSError, RuntimeError) as exc:
        ours = _ours(exc, client)
        if ours is None:
            raise
        raise ours from exc

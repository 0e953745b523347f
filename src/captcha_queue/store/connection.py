"""The one place where redis-py is configured and its errors become ours.

Client settings that hold under load (measured with redis-py 8.1 and Redis 7.0): a bounded
*blocking* pool (callers wait for a free connection instead of opening thousands), an explicit
``socket_timeout`` that every blocking command (claim, waiters) stays well under, and no silent
client-side retries of commands (a retried EVALSHA could apply a state transition twice).

Three deployments, told apart by the URL's scheme (docs/redis.md):

* ``redis://``, ``rediss://``, ``unix://``: one server (unchanged).
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]`` (and
  ``rediss+sentinel``): the primary Sentinel names for ``service_name``, looked up again on every new
  connection, so a failover is ridden through by reconnecting. The password is the data servers';
  ``?sentinel_password=`` (and ``sentinel_username``) authenticate to the sentinels themselves.
* ``redis+cluster://[[user]:password@]host:port[,host:port...]`` (and ``rediss+cluster``): a Redis
  Cluster through redis-py's asyncio ``RedisCluster``. Every key of a namespace carries the
  namespace's hash tag, so every script call and pipeline of a namespace goes to one slot's primary;
  MOVED/ASK redirections are followed (the command did not run), connection errors are not retried.

``?durability=replica`` (any scheme) makes each acknowledged write (submissions, finishes) wait for
one replica (``WAIT 1 <durability_timeout_ms>``, default 1000 ms) on the same connection;
``WriteNotReplicated`` when none acknowledged in time. ``durability=none`` (the default) does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, unquote, urlencode

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import BlockingConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from ..errors import CaptchaQueueError, ConfigError, RedisCommandError, RedisUnavailable
from .server import check_version, redact_url

__all__ = [
    "BLOCK_MAX_S",
    "DURABILITY_LEVELS",
    "PRIMARY_CHECK_S",
    "REDIS_SCHEMES",
    "SOCKET_TIMEOUT_S",
    "ClientProfile",
    "RedisTarget",
    "check_server",
    "client_profile",
    "client_username",
    "is_cluster",
    "make_client",
    "node_info",
    "on_primary_change",
    "parse_redis_url",
    "primary_moved",
    "redis_errors",
    "redis_errors_async",
    "refresh_topology",
    "refused_for_replicas",
    "unfenced_primary",
]

#: Read timeout for every socket. Blocking commands never wait longer than BLOCK_MAX_S.
SOCKET_TIMEOUT_S = 15.0
#: The longest any blocking command (BLPOP in claim, BLPOP/XREAD in waiters) waits server-side.
BLOCK_MAX_S = 5.0
#: Every scheme a Redis URL may have.
REDIS_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)
#: ``durability=``: "none" (acknowledged by the primary) or "replica" (and by one replica: WAIT 1).
DURABILITY_LEVELS = ("none", "replica")
#: Query parameters read here (the rest go to redis-py's connection options).
_OUR_PARAMS = frozenset({"durability", "durability_timeout_ms", "sentinel_password", "sentinel_username"})

Kind = Literal["server", "sentinel", "cluster"]


@dataclass(frozen=True)
class ClientProfile:
    """What the code above the client needs to know about the deployment behind it."""

    kind: Kind = "server"
    durability: str = "none"
    durability_timeout_ms: int = 1000

    @property
    def publish_command(self) -> str:
        """PUBLISH, or SPUBLISH on a Cluster (sharded pub/sub: delivered by the slot's shard only)."""
        return "SPUBLISH" if self.kind == "cluster" else "PUBLISH"


_DEFAULT_PROFILE = ClientProfile()


@dataclass(frozen=True)
class RedisTarget:
    """A parsed Redis URL: the deployment kind, its hosts and the connection options."""

    kind: Kind
    hosts: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    tls: bool = False
    durability: str = "none"
    durability_timeout_ms: int = 1000
    #: For a single server: the URL for redis-py (without our parameters).
    server_url: str = field(default="", repr=False)
    #: redis-py connection options (password, ssl_*, socket_*...).
    options: dict[str, Any] = field(default_factory=dict, repr=False)
    sentinel_options: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def profile(self) -> ClientProfile:
        return ClientProfile(self.kind, self.durability, self.durability_timeout_ms)


def _bad(url: str, why: str) -> ConfigError:
    return ConfigError(f"bad Redis URL {redact_url(url)}: {why}")


def _hosts(url: str, netloc: str) -> tuple[tuple[str, int], ...]:
    hosts: list[tuple[str, int]] = []
    for part in netloc.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not colon:
            host, port = part.strip(), "6379" if "sentinel" not in url.split("://")[0] else "26379"
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _bad(url, f"{part.strip() or 'an empty host'!r} is not host:port")
        hosts.append((host, int(port)))
    return tuple(hosts)


def parse_redis_url(url: str) -> RedisTarget:
    """The deployment a Redis URL names; ConfigError (password redacted) when it is malformed."""
    if not isinstance(url, str) or "://" not in url:
        raise _bad(str(url), f"it must start with one of {', '.join(s + '://' for s in REDIS_SCHEMES)}")
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme not in REDIS_SCHEMES:
        raise _bad(url, f"unknown scheme {scheme!r} (one of {', '.join(REDIS_SCHEMES)})")
    body, _, query = rest.partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    ours = {k: v for k, v in params if k in _OUR_PARAMS}
    theirs = [(k, v) for k, v in params if k not in _OUR_PARAMS]
    durability = ours.get("durability", "none").lower()
    if durability not in DURABILITY_LEVELS:
        raise _bad(url, f"durability must be one of {', '.join(DURABILITY_LEVELS)}, not {durability!r}")
    raw_timeout = ours.get("durability_timeout_ms", "1000")
    if not raw_timeout.isdigit() or not 0 < int(raw_timeout) <= 600_000:
        raise _bad(url, "durability_timeout_ms must be a whole number of ms in 1..600000")
    common: dict[str, Any] = {"durability": durability, "durability_timeout_ms": int(raw_timeout)}
    tls = scheme.startswith("rediss")
    if scheme in ("redis", "rediss", "unix"):
        server_url = f"{scheme}://{body}" + (f"?{urlencode(theirs)}" if theirs else "")
        try:
            parse_url(server_url)
        except ValueError as exc:
            raise _bad(url, str(exc)) from exc
        return RedisTarget("server", tls=tls, server_url=server_url, **common)
    userinfo, at, hostpart = body.rpartition("@")
    netloc, _, path = hostpart.partition("/")
    hosts = _hosts(url, netloc)
    # redis-py parses the options (password, ssl_*, socket_*) of one host's URL.
    single = f"{'rediss' if tls else 'redis'}://{userinfo}{at}{hosts[0][0]}:{hosts[0][1]}"
    try:
        options: dict[str, Any] = dict(parse_url(single + (f"?{urlencode(theirs)}" if theirs else "")))
    except ValueError as exc:
        raise _bad(url, str(exc)) from exc
    for name in ("host", "port", "path"):
        options.pop(name, None)
    options.pop("connection_class", None)
    db = int(options.pop("db", 0) or 0)
    segments = [unquote(s) for s in path.split("/") if s]
    if scheme.endswith("+cluster"):
        if segments not in ([], ["0"]) or db != 0:
            raise _bad(url, "a Redis Cluster has only database 0")
        return RedisTarget("cluster", hosts, tls=tls, options=options, **common)
    if not segments or len(segments) > 2:
        raise _bad(url, "a Sentinel URL names its service: redis+sentinel://host:port,.../service_name/db")
    service = segments[0]
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise _bad(url, f"database {segments[1]!r} is not a number")
        db = int(segments[1])
    sentinel_options: dict[str, Any] = {
        k: v for k, v in options.items() if k.startswith("socket_") or k.startswith("ssl")
    }
    if "sentinel_password" in ours:
        sentinel_options["password"] = ours["sentinel_password"]
    if "sentinel_username" in ours:
        sentinel_options["username"] = ours["sentinel_username"]
    return RedisTarget(
        "sentinel", hosts, service, db, tls, options=options, sentinel_options=sentinel_options, **common
    )


def client_profile(client: Any) -> ClientProfile:
    """The deployment behind ``client`` (a single server for a client made elsewhere)."""
    profile = getattr(client, "_captcha_queue_profile", None)
    return profile if isinstance(profile, ClientProfile) else _DEFAULT_PROFILE


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def client_username(client: Any) -> str | None:
    """The ACL user ``client`` authenticates as (None: the default user)."""
    if isinstance(client, RedisCluster):
        user = client.connection_kwargs.get("username")
    else:
        user = client.connection_pool.connection_kwargs.get("username")
    return str(user) if user else None


#: How often a Sentinel client asks the sentinels which server is the primary, while it is used.
PRIMARY_CHECK_S = 1.0


class _SentinelBlockingPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool with the bounded blocking checkout of ``BlockingConnectionPool``, that follows
    the primary even when the old one still answers.

    redis-py asks the sentinels only when a connection is made, so a connection to a primary that was
    failed over from but still takes writes (until Sentinel demotes it, up to ~10 s later: a second
    failover without WAIT, or a plain SENTINEL FAILOVER) is used on and on: two primaries for the same
    fleet. So while the pool is used it asks every sentinel at most every PRIMARY_CHECK_S (in the
    background) and believes the one with the newest configuration epoch; a connection to any other
    server is closed when it is next checked out and made again to the primary. A write the old
    primary refuses for want of replicas (NOREPLICAS: ``min-replicas-to-write``) asks again at once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._checked_at = 0.0
        self._check: asyncio.Task[None] | None = None
        #: Called when the primary moved under this pool (``on_primary_change``).
        self.listeners: list[Callable[[], None]] = []

    def recheck_soon(self) -> None:
        """Ask the sentinels again at the next checkout (a write was refused: maybe a stale primary)."""
        self._checked_at = 0.0

    async def get_master_address(self) -> Any:
        """The primary the sentinels name in their newest configuration epoch (redis-py takes the
        first sentinel that answers, which may not have heard of a failover yet)."""
        found: list[tuple[int, tuple[str, int]]] = []
        errors: list[str] = []
        manager = self.sentinel_manager
        replies = await asyncio.gather(
            *(sentinel.sentinel_master(self.service_name) for sentinel in manager.sentinels),
            return_exceptions=True,
        )
        for reply in replies:
            if isinstance(reply, BaseException):
                errors.append(f"{type(reply).__name__}: {reply}")
                continue
            state = cast(dict[str, Any], reply)
            if manager.check_master_state(state, self.service_name):
                found.append((int(state.get("config-epoch", 0)), (str(state["ip"]), int(state["port"]))))
        if not found:
            raise MasterNotFoundError(
                f"No master found for {self.service_name!r}" + (f": {'; '.join(errors)}" if errors else "")
            )
        address = max(found)[1]
        self._checked_at = time.monotonic()
        if self.master_address != address:
            previous, self.master_address = self.master_address, address
            # Idle connections reconnect now; those in use when they are next checked out.
            await self.disconnect(inuse_connections=False)
            if previous is not None:
                for listener in list(self.listeners):
                    listener()
        return address

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() - self._checked_at >= PRIMARY_CHECK_S and (
            self._check is None or self._check.done()
        ):
            self._checked_at = time.monotonic()
            self._check = asyncio.create_task(self._recheck())
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def ensure_connection(self, connection: Any) -> None:
        if connection.is_connected and self.master_address not in (None, (connection.host, connection.port)):
            await connection.disconnect()  # to a server that is no longer the primary
        await super().ensure_connection(connection)

    async def _recheck(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):  # the next check tries again
            await self.get_master_address()

    async def check_if_due(self) -> None:
        """Ask the sentinels now if PRIMARY_CHECK_S passed since the last time (for a connection held
        long, such as a subscription, that no checkout rechecks)."""
        if time.monotonic() - self._checked_at >= PRIMARY_CHECK_S:
            self._checked_at = time.monotonic()
            await self._recheck()

    async def disconnect(self, inuse_connections: bool = True) -> None:
        check = self._check
        if (
            inuse_connections
            and check is not None
            and not check.done()
            and check is not asyncio.current_task()
        ):
            check.cancel()  # closing the pool: no check outlives it
            await asyncio.wait([check], timeout=1.0)
        await super().disconnect(inuse_connections)


class SentinelClient(aioredis.Redis):
    """A client of the primary Sentinel names; closing it closes its sentinel connections too."""

    _sentinel: Sentinel

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            await self._sentinel.aclose()


def on_primary_change(client: aioredis.Redis, listener: Callable[[], None]) -> None:
    """Call ``listener`` (on the loop, synchronously) whenever a Sentinel client finds that the primary
    moved: a switch no connection error told of (the old primary still answered), after which what the
    new primary lacks must be written again (the fleet slots: ``SlotLimiter.note_redis_failure``).
    Nothing for other clients (a failure of theirs raises)."""
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, _SentinelBlockingPool):
        pool.listeners.append(listener)


async def primary_moved(client: aioredis.Redis, connection: Any) -> bool:
    """Whether ``connection``, held long by ``client`` (a subscription), is to a server that is no
    longer the primary the sentinels name (asked at most every PRIMARY_CHECK_S). Always False but on
    a Sentinel client: a single server has one address, and a Cluster follows its slots itself."""
    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, _SentinelBlockingPool) or connection is None:
        return False
    await pool.check_if_due()
    address = pool.master_address
    return address is not None and (connection.host, connection.port) != address


def _first_key(args: tuple[Any, ...]) -> Any:
    """The first key of a queued pipeline command (None: a command without keys)."""
    name = str(args[0]).upper() if args else ""
    if name in ("EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO"):
        return args[3] if len(args) > 3 and int(args[2]) > 0 else None
    if name in ("TIME", "WAIT", "INFO", "PING") or len(args) < 2:
        return None
    return args[1]


class _ClusterPipeline(ClusterPipeline):
    """A cluster pipeline that also takes TIME, sent to the node serving the pipeline's first key (the
    clock the namespace's scripts read), so ``stats``, ``workers`` and pauses read one clock."""

    def time(self, **kwargs: Any) -> Any:
        return self.execute_command("TIME", **kwargs)

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        queue = list(getattr(self._execution_strategy, "_command_queue", ()))
        key = next((k for k in (_first_key(c.args) for c in queue) if k is not None), None)
        if key is not None and any(str(c.args[0]).upper() == "TIME" for c in queue):
            with contextlib.suppress(redis.RedisError, LookupError, TypeError):
                node = self.cluster_client.get_node_from_key(key)
                for command in queue:
                    if str(command.args[0]).upper() == "TIME" and "target_nodes" not in command.kwargs:
                        command.kwargs["target_nodes"] = node
        return await super().execute(raise_on_error, allow_redirections)


class ClusterClient(RedisCluster):
    """redis-py's asyncio RedisCluster, with at most ``max_connections`` commands in flight (callers
    wait for room, as with the blocking pool of a single server) and the single client's ``aclose``."""

    _room: asyncio.Semaphore

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._room:
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            raise RedisCommandError("shard_hint is not supported on a Redis Cluster")
        return _ClusterPipeline(self, transaction)  # type: ignore[abstract]

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose()


def make_client(
    url: str,
    *,
    max_connections: int = 32,
    socket_timeout_s: float = SOCKET_TIMEOUT_S,
    pool_timeout_s: float = 30.0,
    client_name: str | None = None,
) -> aioredis.Redis:
    """An asyncio client with a bounded blocking pool and explicit timeouts, for any URL scheme.

    A Cluster client is a ``RedisCluster`` typed as ``Redis``: it has the commands this package uses
    (``client_profile`` and ``is_cluster`` tell the code that must route differently). ``client_name``:
    what each of its connections is called in CLIENT LIST."""
    try:
        target = parse_redis_url(url)
    except ConfigError as exc:
        raise RedisUnavailable(str(exc)) from exc
    connection: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": 5.0,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "retry_on_timeout": False,
    }
    if client_name is not None:
        connection["client_name"] = client_name
    # No client-side retries: a retried EVALSHA could apply a transition twice.
    no_retry = Retry(NoBackoff(), 0)
    client: Any
    if target.kind == "server":
        try:
            pool = BlockingConnectionPool.from_url(
                target.server_url, max_connections=max_connections, timeout=pool_timeout_s, **connection
            )
        except ValueError as exc:
            raise RedisUnavailable(f"bad Redis URL {redact_url(url)}: {exc}") from exc
        client = aioredis.Redis(connection_pool=pool, retry=no_retry)
        # The client owns its pool: aclose() must disconnect it (redis-py leaves a passed-in pool open).
        client.auto_close_connection_pool = True
    elif target.kind == "sentinel":
        sentinel_kwargs = {
            "socket_timeout": 5.0,
            "socket_connect_timeout": 2.0,
            **target.sentinel_options,
        }
        sentinel = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs)
        pool = _SentinelBlockingPool(
            target.service,
            sentinel,
            is_master=True,
            max_connections=max_connections,
            timeout=pool_timeout_s,
            db=target.db,
            ssl=target.tls,
            **{**target.options, **connection},
        )
        client = SentinelClient(connection_pool=pool, retry=no_retry)
        client.auto_close_connection_pool = True
        client._sentinel = sentinel
    else:
        options = {**target.options, **connection}
        options.pop("retry_on_timeout", None)
        client = ClusterClient(
            startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
            ssl=target.tls,
            max_connections=2 * max_connections + 8,
            retry=no_retry,
            require_full_coverage=False,
            **options,
        )
        client._room = asyncio.Semaphore(max_connections)
    client._captcha_queue_profile = target.profile
    return cast(aioredis.Redis, client)


async def refresh_topology(client: aioredis.Redis) -> None:
    """On a Cluster, ask for the slot map again (at most once a second, redis-py's throttle): after a
    failure only a (sharded) subscription saw, so that it reconnects to the slot's new primary, not the
    dead one. A no-op elsewhere (Sentinel is asked on every new connection anyway)."""
    if is_cluster(client):
        cluster: Any = client
        cluster._initialize = True  # what redis-py's own error paths set to request a refresh
        with contextlib.suppress(redis.RedisError, OSError):
            await cluster.initialize()


async def node_info(client: aioredis.Redis, key: str, *sections: str) -> dict[str, Any]:
    """INFO ``sections`` of the server holding ``key``: on a Cluster, its slot's primary (not the
    client's default node); elsewhere the server."""
    if is_cluster(client):
        cluster: Any = client
        await cluster.initialize()
        node = cluster.get_node_from_key(key)
        reply: dict[str, Any] = await cluster.info(*sections, target_nodes=node)
        return reply
    return await client.info(*sections)


async def check_server(client: aioredis.Redis) -> None:
    """Ping the server and refuse versions older than Redis 7.0 / Valkey 7.2."""
    async with redis_errors_async(client):
        info = await client.info("server")
    check_version(info)


async def unfenced_primary(client: aioredis.Redis) -> str | None:
    """On a Sentinel client, a warning when the primary takes writes with no replica in sync
    (``min-replicas-to-write 0``, Redis's default): a failover can then leave two primaries, and the
    fleet limit can be exceeded until Sentinel demotes the old one (docs/redis.md). None otherwise,
    and when the setting cannot be read (CONFIG disabled or not allowed to this user)."""
    if not isinstance(client, SentinelClient):
        return None
    try:
        reply = await client.config_get("min-replicas-to-write")
    except (redis.RedisError, OSError):
        return None
    value = reply.get("min-replicas-to-write")
    if value is None or str(value) != "0":
        return None
    return (
        "the Redis primary takes writes with no replica in sync (min-replicas-to-write 0): a failover "
        "can leave a second primary for ~10 s, losing its writes and letting the fleet exceed its solver "
        "limits; set min-replicas-to-write 1 on every data server (docs/redis.md)"
    )


def _describe(client: aioredis.Redis | None) -> str:
    if client is None:
        return "Redis"
    if is_cluster(client):
        return "the Redis Cluster"
    if isinstance(client, SentinelClient):
        return "the Redis primary Sentinel names"
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


def refused_for_replicas(exc: BaseException) -> bool:
    """Whether Redis refused a write with NOREPLICAS (see ``_no_replicas``): a caller that turns script
    failures into its own errors lets this one through to ``redis_errors``, which makes it transient."""
    return isinstance(exc, redis.ResponseError) and str(exc).startswith("NOREPLICAS")


def _no_replicas(exc: redis.ResponseError, client: aioredis.Redis | None) -> RedisUnavailable:
    """NOREPLICAS: the primary has no replica in sync (``min-replicas-to-write``), so it refuses
    writes: a replica being failed over, or a primary that was failed over from and is about to be
    demoted. Transient; a Sentinel client asks the sentinels again at once."""
    if client is not None and isinstance(client.connection_pool, _SentinelBlockingPool):
        client.connection_pool.recheck_soon()
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return RedisUnavailable(f"{_describe(client)} refused a write for want of replicas: {first}")


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
        if refused_for_replicas(exc):
            return _no_replicas(exc, client)
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

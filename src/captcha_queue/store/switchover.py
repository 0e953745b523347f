"""A planned Sentinel switchover that loses no acknowledged write (``captcha-queue switchover``).

Redis 7.0's ``SENTINEL FAILOVER`` promotes a replica without telling the primary (redis/redis#13118):
the old primary goes on taking writes, and the other replica, still following it, acknowledges them
(``WAIT`` included), until Sentinel next reads the old primary's INFO (up to 10 s later) and demotes
it; everything written there meanwhile is then discarded. Measured on this machine: 720 of 3,000
acknowledged submissions (``durability=replica``) gone in one switch (bench/results/chaos-ha-*.md).

``switchover`` fences the old primary first, then lets Sentinel switch:

1. ``CLIENT PAUSE <pause_ms> WRITE`` on the primary: every write (each EVALSHA) waits, reads go on;
2. wait until every replica online has the primary's replication offset (``ROLE``);
3. ``SENTINEL FAILOVER <service>``;
4. wait until every sentinel has the new primary on record (what clients look up) and it answers
   ``ROLE`` as a master;
5. ``REPLICAOF <new primary>`` on the old one: the writes it held now fail with READONLY (never
   applied) and their clients reconnect to the new primary (redis-py does on READONLY);
6. ``CLIENT UNPAUSE``, and wait until the old primary follows the new one.

Writes wait for the switch (steps 1-5: about the election, 1-2 s here) instead of being lost. A failure
before step 3 unpauses the primary and changes nothing; after it, the error says what was applied and
the pause lapses by itself after ``pause_ms``. The Redis user needs ``CLIENT``, ``ROLE`` and
``REPLICAOF``; the sentinels, ``SENTINEL``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from ..errors import CaptchaQueueError, ConfigError, RedisCommandError, RedisUnavailable
from .connection import parse_redis_url

__all__ = ["Switchover", "switchover"]

Address = tuple[str, int]


@dataclass(frozen=True)
class Switchover:
    """What a switchover did: the old and new primary (host, port), how long writes were held
    (``paused_ms``: from the pause until the old primary refused them) and the whole switch (``took_s``)."""

    service: str
    old_primary: Address
    new_primary: Address
    paused_ms: int
    took_s: float

    def describe(self) -> str:
        old, new = self.old_primary, self.new_primary
        return (
            f"{self.service}: primary {old[0]}:{old[1]} -> {new[0]}:{new[1]}; writes held "
            f"{self.paused_ms} ms, none lost; {old[0]}:{old[1]} now follows the new primary "
            f"({self.took_s:.1f} s in all)"
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll ``check`` (connection errors count as "not yet") until it holds; False at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if await check():
                return True
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval_s)


class _Switch:
    def __init__(self, url: str, pause_ms: int, timeout_s: float) -> None:
        target = parse_redis_url(url)
        if target.kind != "sentinel" or target.service is None:
            raise ConfigError(
                "a switchover needs a Sentinel URL: redis+sentinel://host:port,.../service_name"
            )
        self.service = target.service
        self.pause_ms = pause_ms
        self.timeout_s = timeout_s
        self.node_options: dict[str, Any] = {
            k: v for k, v in target.options.items() if not k.startswith("socket_")
        }
        self.node_options.update(ssl=target.tls, socket_timeout=5.0, socket_connect_timeout=2.0)
        sentinel_kwargs = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0, **target.sentinel_options}
        self.sentinel = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs)

    def node(self, address: Address) -> aioredis.Redis:
        return aioredis.Redis(host=address[0], port=address[1], **self.node_options)

    async def named_primaries(self) -> set[Address]:
        """The primary each sentinel that answers has on record for the service: ``SENTINEL MASTER``,
        what clients look up (GET-MASTER-ADDR-BY-NAME answers the promoted replica earlier, while the
        record still names the old primary until the failover ends)."""
        named: set[Address] = set()
        for sentinel in self.sentinel.sentinels:
            try:
                state: Any = await sentinel.sentinel_master(self.service)
                named.add((_text(state["ip"]), int(state["port"])))
            except (redis.RedisError, OSError, TypeError, ValueError, KeyError):
                continue
        return named

    async def run(self) -> Switchover:
        started = time.monotonic()
        try:
            old = await self.sentinel.discover_master(self.service)
        except (redis.RedisError, OSError) as exc:
            raise RedisUnavailable(f"no sentinel names a primary for {self.service!r}: {exc}") from exc
        old = (_text(old[0]), int(old[1]))
        replicas = await self.sentinel.discover_slaves(self.service)
        if not replicas:
            raise RedisCommandError(f"{self.service}: no replica is in a state to take over; nothing changed")
        primary = self.node(old)
        try:
            return await self._switch(primary, old, started)
        finally:
            await primary.aclose()

    async def _switch(self, primary: aioredis.Redis, old: Address, started: float) -> Switchover:
        try:
            role: Any = await primary.execute_command("ROLE")  # type: ignore[no-untyped-call]
            if _text(role[0]) != "master":
                raise RedisCommandError(f"{old[0]}:{old[1]} is not a primary any more; nothing changed")
            await primary.execute_command("CLIENT", "PAUSE", self.pause_ms, "WRITE")  # type: ignore[no-untyped-call]
        except (redis.RedisError, OSError) as exc:
            raise RedisUnavailable(
                f"cannot pause writes on {old[0]}:{old[1]}: {exc}; nothing changed"
            ) from exc
        paused_at = time.monotonic()
        try:
            if not await _until(lambda: self._replicas_caught_up(primary), min(self.timeout_s, 10.0)):
                raise RedisCommandError("no replica caught up with the paused primary")
            await self._failover()
        except (CaptchaQueueError, redis.RedisError, OSError) as exc:
            # Nothing switched: give the primary its writes back.
            try:
                await primary.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
            except (redis.RedisError, OSError):
                pass
            raise RedisCommandError(
                f"{self.service}: switchover not started ({exc}); writes on {old[0]}:{old[1]} resumed, "
                "nothing changed"
            ) from exc
        new = await self._new_primary(old)
        try:
            await primary.execute_command("REPLICAOF", new[0], new[1])  # type: ignore[no-untyped-call]
            paused_ms = round((time.monotonic() - paused_at) * 1000)
            await primary.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
        except (redis.RedisError, OSError) as exc:
            raise RedisUnavailable(
                f"{self.service}: {new[0]}:{new[1]} is the primary now, but {old[0]}:{old[1]} could not be "
                f"told to follow it ({exc}); its writes stay paused until the {self.pause_ms} ms pause "
                "lapses and Sentinel demotes it (within 10 s of the switch)"
            ) from exc
        if not await _until(lambda: self._follows(primary, new), self.timeout_s, 0.05):
            raise RedisUnavailable(
                f"{self.service}: {new[0]}:{new[1]} is the primary and {old[0]}:{old[1]} a replica of it, "
                f"but its replication link was not up within {self.timeout_s:.0f} s"
            )
        return Switchover(self.service, old, new, paused_ms, time.monotonic() - started)

    async def _replicas_caught_up(self, primary: aioredis.Redis) -> bool:
        """Every replica the paused primary has has acknowledged its whole replication stream."""
        role: Any = await primary.execute_command("ROLE")  # type: ignore[no-untyped-call]
        offset, followers = int(role[1]), role[2]
        return bool(followers) and all(int(f[2]) >= offset for f in followers)

    async def _failover(self) -> None:
        """SENTINEL FAILOVER on the first sentinel that takes it (one that refuses says why)."""
        refusals: list[str] = []
        for sentinel in self.sentinel.sentinels:
            try:
                await sentinel.sentinel_failover(self.service)
                return
            except redis.ResponseError as exc:
                refusals.append(str(exc))
            except (redis.RedisError, OSError) as exc:
                refusals.append(f"unreachable: {exc}")
        raise RedisCommandError(f"SENTINEL FAILOVER refused: {'; '.join(refusals) or 'no sentinel'}")

    async def _new_primary(self, old: Address) -> Address:
        found: list[Address] = []

        async def elected() -> bool:
            named = await self.named_primaries()
            if len(named) != 1 or old in named:
                return False
            (new,) = named
            client = self.node(new)
            try:
                role: Any = await client.execute_command("ROLE")  # type: ignore[no-untyped-call]
            finally:
                await client.aclose()
            if _text(role[0]) != "master":
                return False
            found.append(new)
            return True

        if not await _until(elected, self.timeout_s, 0.05):
            raise RedisUnavailable(
                f"{self.service}: SENTINEL FAILOVER was accepted but the sentinels named no new primary "
                f"within {self.timeout_s:.0f} s; writes on {old[0]}:{old[1]} stay paused until the "
                f"{self.pause_ms} ms pause lapses"
            )
        return found[0]

    async def _follows(self, primary: aioredis.Redis, new: Address) -> bool:
        role: Any = await primary.execute_command("ROLE")  # type: ignore[no-untyped-call]
        return bool(_text(role[0]) == "slave" and int(role[2]) == new[1] and _text(role[3]) == "connected")

    async def aclose(self) -> None:
        for sentinel in self.sentinel.sentinels:
            await sentinel.aclose()


async def switchover(url: str, *, pause_ms: int = 30_000, timeout_s: float = 30.0) -> Switchover:
    """Switch the Sentinel service of ``url`` to a replica without losing an acknowledged write
    (the module's docstring says how). ``pause_ms``: the longest writes are held should this process
    die midway (a switch holds them 1-2 s); ``timeout_s``: for each wait."""
    if not 1_000 <= pause_ms <= 600_000:
        raise ConfigError(f"pause_ms must be 1000..600000, not {pause_ms}")
    if not 0 < timeout_s <= 600:
        raise ConfigError(f"timeout_s must be in (0, 600], not {timeout_s}")
    switch = _Switch(url, pause_ms, timeout_s)
    try:
        return await switch.run()
    finally:
        await switch.aclose()

"""``captcha-queue doctor``: is this Redis fit to hold the queue? (``stats`` prints the same warnings.)

- **server**: Redis >= 7.0 or Valkey >= 7.2 (every command also refuses an older one at connect).
- **maxmemory-policy**: must be ``noeviction``. Any other policy lets Redis delete keys when it reaches
  ``maxmemory``: tasks, leases and results would vanish without an error.
- **persistence**: AOF on, or at least one RDB save point. With neither, a restart loses every task.

INFO tells the first two and whether AOF is on; RDB save points need ``CONFIG GET save``, which an
ACL user may be refused: then the answer is "unknown", which is not counted as a problem. ``stats``
does not ask when it logs in as a named ACL user (the least-privilege users of the README may not, and
every refusal would land in the server's ACL LOG).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click
import msgspec

from ..errors import CaptchaQueueError, RedisCommandError, RedisUnavailable, ServerVersionError
from ..store.connection import client_username, redis_errors_async
from ..store.server import check_version, redact_url
from .app import EXIT_NOT_OK, _unreachable, cli, connection_options, echo_json, get_settings, run

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["Check", "diagnose", "warnings"]


class Check(msgspec.Struct, frozen=True):
    """One finding: ``ok`` is None when it could not be told (a refused CONFIG GET)."""

    name: str
    ok: bool | None
    value: str
    advice: str = ""


async def diagnose(client: aioredis.Redis, *, read_config: bool = True) -> list[Check]:
    """Read the server's version, eviction policy and persistence (INFO, and CONFIG GET save unless
    ``read_config`` is false)."""
    async with redis_errors_async(client):
        info: dict[str, Any] = await client.info("server", "memory", "persistence")
    save: str | None = None
    if info.get("aof_enabled") != 1 and read_config:
        try:
            async with redis_errors_async(client):
                reply: dict[Any, Any] = await client.config_get("save")
            save = _text(next(iter(reply.values()), b""))
        except RedisCommandError:  # CONFIG is an admin command: an ACL user may not run it
            save = None
    return [_server(info), _eviction(info), _persistence(info, save)]


async def warnings(client: aioredis.Redis) -> list[str]:
    """One line per problem found (for ``stats``); nothing when the checks cannot be run."""
    user = client_username(client)
    try:
        checks = await diagnose(client, read_config=user in (None, "", "default"))
    except RedisCommandError:
        return []
    return [f"{c.name} {c.value}: {c.advice}" for c in checks if c.ok is False]


def _server(info: dict[str, Any]) -> Check:
    name = "valkey" if "valkey_version" in info or info.get("server_name") == "valkey" else "redis"
    value = f"{name} {info.get('valkey_version') or info.get('redis_version') or '?'}"
    try:
        check_version(info)
    except ServerVersionError as exc:
        return Check("server", False, value, str(exc))
    return Check("server", True, value)


def _eviction(info: dict[str, Any]) -> Check:
    policy = info.get("maxmemory_policy")
    if policy is None:
        return Check("maxmemory-policy", None, "unknown")
    if policy == "noeviction":
        return Check("maxmemory-policy", True, str(policy))
    return Check(
        "maxmemory-policy",
        False,
        str(policy),
        "at maxmemory Redis deletes keys, and queued tasks, leases and results with them; "
        "set maxmemory-policy noeviction",
    )


def _persistence(info: dict[str, Any], save: str | None) -> Check:
    if info.get("aof_enabled") == 1:
        return Check("persistence", True, "AOF on")
    if save:
        return Check("persistence", True, f"RDB save points {save}")
    if save is None:
        return Check("persistence", None, "AOF off, RDB save points unknown (CONFIG GET not run or refused)")
    return Check(
        "persistence",
        False,
        "off (no AOF, no RDB save points)",
        "a restart loses every task and result; turn on appendonly (or RDB save points)",
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@cli.command("doctor")
@connection_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def doctor_cmd(as_json: bool) -> None:
    """Check that Redis is fit for the queue: version, maxmemory-policy, persistence (exit 3 on a problem)."""
    from ..store.connection import make_client

    settings = get_settings()
    shown = redact_url(settings.redis_url)

    async def go() -> list[Check]:
        client = make_client(settings.redis_url, max_connections=2)
        try:
            return await diagnose(client)
        except RedisUnavailable as exc:
            raise _unreachable(shown, exc) from exc
        except RedisCommandError as exc:  # INFO refused (an ACL without +info)
            raise CaptchaQueueError(f"Redis at {shown} answered an error: {exc}") from exc
        finally:
            await client.aclose(close_connection_pool=True)

    checks = run(go())
    ok = not any(c.ok is False for c in checks)
    if as_json:
        echo_json({"ok": ok, "redis_url": shown, "checks": checks})
    else:
        for c in checks:
            status = {True: "ok", False: "PROBLEM", None: "unknown"}[c.ok]
            click.echo(f"{status:<8} {c.name:<17} {c.value}" + (f": {c.advice}" if c.advice else ""))
    sys.exit(0 if ok else EXIT_NOT_OK)

"""``captcha-queue gateway``: serve the solver protocols (in.php/res.php, the JSON API) in front of the
queue, and ``gateway keys create/list/revoke`` its client keys.

The first line on stdout is the gateway's base URL (read it from scripts and tests); logs go to stderr.
SIGTERM and SIGINT stop it. Its options are generated from ``GatewaySettings`` (declared once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

import click

from ..errors import ConfigError, InvalidArgument
from ..gateway import GatewaySettings, create_key, insecure_binding, list_keys, revoke_key, run_gateway
from ..models import PRIORITIES
from ..options import build
from ..store.keys import validate_account, validate_namespace
from ..worker.process import run_loop
from .app import CliGroup, FiniteFloat, checked, cli, echo_json, get_settings, open_queue, run
from .options import settings_options

__all__ = ["gateway_cmd"]

#: The pingback signing secret: the same variable as `captcha-queue webhooks run` reads.
_SECRET_ENV = "CAPTCHA_QUEUE_WEBHOOK_SECRET"


@cli.group("gateway", cls=CliGroup, invoke_without_command=True)
@settings_options(GatewaySettings, elsewhere=("redis_url",))
@click.pass_context
def gateway_cmd(ctx: click.Context, /, **values: Any) -> None:
    """Serve in.php/res.php and the JSON API in front of the queue; print the base URL.

    Clients send a gateway client key (``captcha-queue gateway keys create``), never the provider's.
    Pingbacks are delivered by this process, signed with $CAPTCHA_QUEUE_WEBHOOK_SECRET when it is set.
    """
    if ctx.invoked_subcommand is not None:
        return
    base = get_settings()
    secret = os.environ.get(_SECRET_ENV, "").strip() or None  # a secret is never a flag
    settings = build(
        GatewaySettings, values, redis_url=values.pop("redis_url") or base.redis_url, webhook_secret=secret
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warning = insecure_binding(settings)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    run_loop(_serve(settings))


async def _serve(settings: GatewaySettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with run_gateway(settings) as gateway:
            click.echo(gateway.base_url)
            sys.stdout.flush()
            click.echo(
                f"gateway on {gateway.base_url} (in.php, res.php, createTask, getTaskResult)", err=True
            )
            await stop.wait()
        return 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


@gateway_cmd.group("keys")
def keys_cmd() -> None:
    """Client keys of the gateway: stored hashed in Redis; each maps to a namespace and its limits."""


@keys_cmd.command("create")
@click.option(
    "--key-namespace",
    "key_namespace",
    metavar="NAME",
    default=None,
    callback=checked(validate_namespace),
    help="Namespace the key's tasks go to (default: the command's namespace).",
)
@click.option("--priority", type=click.Choice(PRIORITIES), default="normal", show_default=True)
@click.option(
    "--rate-per-s", type=FiniteFloat(min=0, min_open=True), default=None, help="Requests per second."
)
@click.option("--max-in-flight", type=click.IntRange(min=1), default=None, help="Tasks in flight at once.")
@click.option(
    "--account",
    default="default",
    show_default=True,
    callback=checked(validate_account),
    help="Solver account whose slots threadsinfo reports.",
)
@click.option("--label", default="", help="A note shown by keys list.")
def keys_create(
    key_namespace: str | None,
    priority: str,
    rate_per_s: float | None,
    max_in_flight: int | None,
    account: str,
    label: str,
) -> None:
    """Create a key and print it: it is shown this once (Redis keeps only its SHA-256)."""
    settings = get_settings()

    async def go() -> None:
        async with open_queue(settings) as queue:
            try:
                key, record = await create_key(
                    queue.client,
                    namespace=key_namespace or settings.namespace,
                    priority=priority,
                    rate_per_s=rate_per_s,
                    max_in_flight=max_in_flight,
                    account=account,
                    label=label,
                )
            except InvalidArgument as exc:
                raise ConfigError(str(exc)) from exc
        click.echo(key)
        click.echo(f"key id {record.id} -> namespace {record.namespace} (shown once: keep it)", err=True)

    run(go())


@keys_cmd.command("list")
def keys_list() -> None:
    """Every key's record, one JSON document a line (ids, namespaces, limits: never a key)."""
    settings = get_settings()

    async def go() -> None:
        async with open_queue(settings) as queue:
            for record in await list_keys(queue.client):
                echo_json(record)

    run(go())


@keys_cmd.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke the key with this id (keys list); gateways stop accepting it within --key-cache-s."""
    settings = get_settings()

    async def go() -> bool:
        async with open_queue(settings) as queue:
            return await revoke_key(queue.client, key_id)

    if not run(go()):
        raise ConfigError(f"no key has the id {key_id!r}")
    click.echo(f"revoked {key_id}")

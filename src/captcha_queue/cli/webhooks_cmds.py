"""``captcha-queue webhooks``: run a deliverer, and see or resend deliveries (``list``, ``show``, ``retry``).

``run`` takes every ``WebhookSettings`` field as a flag and a variable (generated, cli/options.py);
the signing secret comes from ``CAPTCHA_QUEUE_WEBHOOK_SECRET`` or ``--secret-file``, never a flag.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, cast

import click
from rich.console import Console
from rich.markup import escape as esc
from rich.table import Table

from ..errors import ConfigError, TaskNotFound
from ..options import build
from ..webhooks import Delivery, Outbox, WebhookDeliverer, WebhookSettings
from ..webhooks._outbox import DELIVERY_STATES, DeliveryState
from .app import cli, connection_options, echo_json, get_settings, open_queue, run
from .options import settings_options

__all__ = ["webhooks_group"]

_SECRET_ENV = "CAPTCHA_QUEUE_WEBHOOK_SECRET"


def _console() -> Console:
    console = Console(highlight=False, emoji=False)
    if not console.is_terminal:
        console = Console(highlight=False, emoji=False, width=max(console.width, 160))
    return console


def _clock(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def _preview(text: str | None, limit: int = 60) -> str:
    if not text:
        return "-"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _next(delivery: Delivery) -> str:
    if delivery.state != "pending":
        return "-"
    if delivery.leased_until:
        return f"sending (until {_clock(delivery.leased_until)})"
    return _clock(delivery.next_ms)


def _shown(delivery: Delivery) -> dict[str, Any]:
    """A delivery as the output shows it: set fields only, without the lease token (internal)."""
    fields = ((name, getattr(delivery, name)) for name in delivery.__struct_fields__)
    return {name: value for name, value in fields if name != "lease" and value is not None}


@cli.group("webhooks")
def webhooks_group() -> None:
    """Webhook deliveries: results sent to the pingback URL of their task."""


@webhooks_group.command("run")
@connection_options
@settings_options(WebhookSettings)
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Read the signing secret from this file (default: ${_SECRET_ENV}).",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve the delivery counters on /metrics at this port (default: not served).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address of the /metrics endpoint (it has no authentication).",
)
def run_cmd(
    secret_file: Path | None, log_level: str, metrics_port: int | None, metrics_host: str, **values: Any
) -> None:
    """Send due deliveries until stopped (SIGTERM or Ctrl-C); any number may run at once."""
    secret = _read_secret(secret_file) if secret_file else _secret_from_env()
    settings = build(WebhookSettings, values, secret=secret)
    connection = get_settings()

    from ..worker.logs import configure_logging
    from ..worker.metrics import serve_metrics

    configure_logging("text", getattr(logging, log_level.upper()), secrets=[secret] if secret else [])

    async def go() -> None:
        async with open_queue(connection) as q:  # Redis checked (one line if it cannot be reached)
            deliverer = WebhookDeliverer(q.client, namespace=q.namespace, settings=settings)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, deliverer.request_stop)
            server = serve_metrics(deliverer.registry, metrics_port, metrics_host) if metrics_port else None
            click.echo(
                f"delivering webhooks of namespace {q.namespace} as {deliverer.deliverer_id}", err=True
            )
            try:
                await deliverer.run()
            finally:
                if server is not None:
                    await server.aclose()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    run(go())


def _secret_from_env() -> str | None:
    value = os.environ.get(_SECRET_ENV, "").strip()
    return value or None


def _read_secret(path: Path) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the secret file {path}: {exc.strerror or exc}") from None
    if not secret:
        raise ConfigError(f"the secret file {path} is empty")
    return secret


@webhooks_group.command("list")
@connection_options
@click.option(
    "--state", type=click.Choice(DELIVERY_STATES), default=None, help="Only deliveries in this state."
)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document per line.")
def list_cmd(state: str | None, limit: int, as_json: bool) -> None:
    """Deliveries, newest first: state, attempts, next try, last error."""
    settings = get_settings()

    async def go() -> list[Delivery]:
        async with open_queue(settings) as q:
            return await Outbox(q.client, q.namespace).deliveries(cast(DeliveryState | None, state), limit)

    deliveries = run(go())
    if as_json:
        for delivery in deliveries:
            echo_json(_shown(delivery))
        return
    if not deliveries:
        click.echo("no deliveries" + (f" {state}" if state else ""))
        return
    table = Table(title=f"webhooks · {settings.namespace}", title_justify="left")
    for column in ("task", "state", "attempts", "finished", "next try", "last status", "last error"):
        table.add_column(
            column, justify="right" if column == "attempts" else "left", no_wrap=column == "task"
        )
    for d in deliveries:
        table.add_row(
            esc(d.task),
            d.state,
            str(d.attempts),
            _clock(d.created_ms),
            _next(d),
            str(d.last_status or "-"),
            esc(_preview(d.reason or d.last_error)),
        )
    _console().print(table)


@webhooks_group.command("show")
@connection_options
@click.argument("task_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def show_cmd(task_id: str, as_json: bool) -> None:
    """One delivery (ID is its task's id): where it goes, every field of its state, the result sent."""
    settings = get_settings()

    async def go() -> Delivery | None:
        async with open_queue(settings) as q:
            return await Outbox(q.client, q.namespace).get(task_id)

    delivery = run(go())
    if delivery is None:
        raise TaskNotFound(f"no webhook delivery for task {task_id}")
    if as_json:
        echo_json(_shown(delivery))
        return
    for name, value in _shown(delivery).items():
        if name.endswith("_ms") or name == "leased_until":
            value = f"{_clock(value)} ({value})"
        click.echo(f"{name}: {value}")


@webhooks_group.command("retry")
@connection_options
@click.argument("task_ids", nargs=-1, required=True, metavar="ID...")
def retry_cmd(task_ids: tuple[str, ...]) -> None:
    """Send deliveries again now (failed, delivered or pending); their max age counts from now."""
    settings = get_settings()

    async def go() -> list[str]:
        missing: list[str] = []
        async with open_queue(settings) as q:
            outbox = Outbox(q.client, q.namespace)
            for task_id in dict.fromkeys(task_ids):
                if await outbox.retry(task_id):
                    click.echo(f"retrying {task_id}")
                else:
                    missing.append(task_id)
        return missing

    missing = run(go())
    if missing:
        raise TaskNotFound(f"no webhook delivery for task {', '.join(missing)}")

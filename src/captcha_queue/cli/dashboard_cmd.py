"""``captcha-queue dashboard``: serve the web dashboard in the foreground.

The first line on stdout is its base URL; logs go to stderr. SIGTERM and SIGINT stop it. It binds
127.0.0.1; any other address needs a login token (read from a file or the environment, never from
the command line) and TLS or ``--insecure-http``: otherwise it refuses to start with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

import click

from ..errors import ConfigError
from ..queue._namespaces import namespace_list
from ..store.keys import validate_account
from ..store.server import redact_url
from .app import FiniteFloat, checked, cli, connection_options, get_settings

__all__ = ["ENV_OPERATOR_TOKEN", "ENV_VIEWER_TOKEN"]

ENV_OPERATOR_TOKEN = "CAPTCHA_QUEUE_DASHBOARD_OPERATOR_TOKEN"
ENV_VIEWER_TOKEN = "CAPTCHA_QUEUE_DASHBOARD_VIEWER_TOKEN"

_file = click.Path(dir_okay=False, path_type=Path)


def _token(path: Path | None, env: str) -> str | None:
    from ..dashboard import read_token_file

    if path is not None:
        return read_token_file(path)
    value = os.environ.get(env, "").strip()
    return value or None


def _accounts(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values or ("default",)))


@cli.command("dashboard")
@connection_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8470, show_default=True, help="0: a free one.")
@click.option(
    "--operator-token-file",
    type=_file,
    default=None,
    help=f"Login token of the operator role (reads and acts) [env: {ENV_OPERATOR_TOKEN}].",
)
@click.option(
    "--viewer-token-file",
    type=_file,
    default=None,
    help=f"Login token of the read-only viewer role [env: {ENV_VIEWER_TOKEN}].",
)
@click.option("--read-only", is_flag=True, help="Without tokens (loopback): every visitor is a viewer.")
@click.option(
    "--account",
    "accounts",
    multiple=True,
    callback=lambda ctx, param, values: tuple(checked(validate_account)(ctx, param, v) for v in values),
    help="Solver account whose slots the capacity screen shows (repeat; default: default, and every "
    "account the workers register).",
)
@click.option(
    "--refresh",
    "refresh_s",
    type=FiniteFloat(min=0.2, max=3600),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes of each screen's live part.",
)
@click.option("--tls-cert", type=_file, default=None, help="Serve HTTPS with this certificate (PEM).")
@click.option("--tls-key", type=_file, default=None, help="The certificate's private key (PEM).")
@click.option(
    "--insecure-http",
    is_flag=True,
    help="Serve plain HTTP on a non-loopback address (only behind a TLS proxy or on a private network).",
)
@click.option(
    "--allowed-origin",
    "allowed_origins",
    multiple=True,
    help="Another Origin accepted for actions (scheme://host[:port], as the browser sees a proxy).",
)
@click.option(
    "--namespaces",
    "namespaces",
    default=None,
    callback=checked(namespace_list),
    help="Several namespaces (a,b): an overview across them at /, each one's screens under /ns/<name>/.",
)
def dashboard_cmd(
    host: str,
    port: int,
    operator_token_file: Path | None,
    viewer_token_file: Path | None,
    read_only: bool,
    accounts: tuple[str, ...],
    refresh_s: float,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure_http: bool,
    allowed_origins: tuple[str, ...],
    namespaces: list[str] | None,
) -> None:
    """Serve the web dashboard (overview, capacity, workers, errors, latency, accounts, dead letters,
    task lookup, live events, pause/resume, webhooks, audit) and print its base URL."""
    from ..dashboard import DashboardConfig

    config = DashboardConfig(
        host=host,
        port=port,
        operator_token=_token(operator_token_file, ENV_OPERATOR_TOKEN),
        viewer_token=_token(viewer_token_file, ENV_VIEWER_TOKEN),
        read_only=read_only,
        accounts=_accounts(accounts),
        refresh_s=refresh_s,
        tls_cert=tls_cert,
        tls_key=tls_key,
        insecure_http=insecure_http,
        allowed_origins=allowed_origins,
        namespaces=tuple(namespaces or ()),
    ).check()  # before anything connects or listens
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(config, settings.redis_url, settings.namespace))


async def _serve(config: object, redis_url: str, namespace: str) -> None:
    from ..dashboard import DashboardConfig, serve

    assert isinstance(config, DashboardConfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with serve(config, redis_url, namespace) as url:
            click.echo(url)
            sys.stdout.flush()
            login = "login token required" if config.auth_required else "no login (loopback)"
            which = (
                f"namespaces {', '.join(config.namespaces)}"
                if config.namespaces
                else f"namespace {namespace}"
            )
            click.echo(f"dashboard on {url} for {which} at {redact_url(redis_url)} ({login})", err=True)
            await stop.wait()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from exc
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

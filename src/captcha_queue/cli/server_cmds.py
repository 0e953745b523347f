"""Commands that run servers: ``redis`` (and, until it exists, the ``demo`` placeholder)."""

from __future__ import annotations

import signal
import sys

import click

from ..errors import ConfigError
from ..store.server import EmbeddedRedis, Persistence, check_redis, state_dir
from .app import cli


@cli.command("redis")
@click.option("--port", type=int, default=None, help="Port to listen on (default: a free one).")
@click.option("--appendonly", is_flag=True, help="Keep data in an append-only file.")
@click.option(
    "--appendfsync",
    type=click.Choice(["always", "everysec", "no"]),
    default="everysec",
    show_default=True,
)
@click.option("--dir", "directory", default=None, help="Data directory (with --appendonly).")
def redis_cmd(port: int | None, appendonly: bool, appendfsync: str, directory: str | None) -> None:
    """Run a private Redis-compatible server in the foreground and print its URL.

    The server requires a random password, kept in a file only you can read
    (~/.local/state/captcha-queue/redis-PORT.password); captcha-queue commands find it for the
    printed URL, so it is never typed or shown.
    """
    persistence = Persistence(appendonly=appendonly, appendfsync=appendfsync, directory=directory)
    # Before the URL is printed: whoever reads it may send SIGTERM at once.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = EmbeddedRedis(port=port, persistence=persistence, password_dir=state_dir()).start()
    try:
        check_redis(server.url)
        click.echo(server.public_url)
        click.echo(f"export REDIS_URL={server.public_url}   # Ctrl-C stops the server", err=True)
        click.echo(
            f"password in {server.password_file} (mode 0600; captcha-queue commands read it for this URL)",
            err=True,
        )
        sys.stdout.flush()
        assert server.process is not None
        code = server.process.wait()
        raise ConfigError(f"the server on port {server.port} exited by itself with code {code}")
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()

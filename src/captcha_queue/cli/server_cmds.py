"""Commands about the Redis servers: ``redis`` runs a private one, ``switchover`` moves a Sentinel
service to a replica without losing a write."""

from __future__ import annotations

import signal
import sys

import click

from ..errors import ConfigError
from ..store.server import EmbeddedRedis, Persistence, check_redis, state_dir
from .app import FiniteFloat, cli, connection_options, get_settings, run


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


@cli.command("switchover")
@connection_options
@click.option(
    "--pause-ms",
    type=click.IntRange(1_000, 600_000),
    default=30_000,
    show_default=True,
    help="The longest writes stay held should this command die midway (a switch holds them 1-2 s).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=FiniteFloat(min=0, max=600, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds to wait for each step (replicas caught up, the election, the old primary following).",
)
def switchover_cmd(pause_ms: int, timeout_s: float) -> None:
    """Switch the Sentinel service of --redis-url to a replica, losing no acknowledged write.

    Plain SENTINEL FAILOVER (Redis 7.0) leaves the old primary taking writes until Sentinel demotes it
    (up to 10 s), and discards them then. This pauses writes on the primary, waits for the replicas to
    have everything, runs SENTINEL FAILOVER, points the old primary at the new one (its held writes
    fail, unapplied, and their clients reconnect) and unpauses it. Writes wait during the switch.
    """
    from ..store.switchover import switchover

    result = run(switchover(get_settings().redis_url, pause_ms=pause_ms, timeout_s=timeout_s))
    click.echo(result.describe())

"""The root command, shared options and the one-line error handling every command gets."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import CaptchaQueueError

__all__ = ["CliGroup", "cli", "main"]


class CliGroup(click.Group):
    """A group whose errors are one readable line and a non-zero exit (a traceback with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CaptchaQueueError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=CliGroup)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="captcha-queue")
def cli(debug: bool) -> None:
    """captcha-queue: a reliable Redis queue for CAPTCHA-solving tasks."""


def main() -> None:
    cli(prog_name="captcha-queue")

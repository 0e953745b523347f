"""``captcha-queue reports list/purge``: report requests (refund claims) waiting for their account.

A request waits for a worker of the account ref that solved the task (its name and key fingerprint).
When no worker serves that ref any more (the account was removed, its key rotated), ``list`` shows it
with 0 workers and ``purge`` drops its requests; workers also drop requests older than
``--report-expire-s`` by themselves (queue/_accounts.py, worker/_reports.py).
"""

from __future__ import annotations

import time

import click
from rich.console import Console
from rich.markup import escape as esc
from rich.table import Table

from ..errors import InvalidArgument
from ..models import ReportBacklog
from ..store.keys import validate_account_ref
from .app import FiniteFloat, checked, cli, connection_options, echo_json, get_settings, open_queue, run

__all__ = ["backlog_table"]


@cli.group("reports")
def reports_group() -> None:
    """Report requests (refund claims) waiting for a worker of their account."""


@reports_group.command("list")
@connection_options
@click.option("--json", "as_json", is_flag=True, help="A JSON array.")
def list_cmd(as_json: bool) -> None:
    """Every account ref with requests waiting or taken, oldest first, and the live workers serving
    it (0: nobody will send them: purge them, or run a worker with that account's key)."""
    settings = get_settings()

    async def go() -> None:
        async with open_queue(settings) as q:
            backlog = await q.report_backlog()
        if as_json:
            echo_json(backlog)
        elif not backlog:
            click.echo("no report requests waiting")
        else:
            Console(highlight=False, emoji=False, width=160).print(backlog_table(backlog))

    run(go())


@reports_group.command("purge")
@connection_options
@click.option(
    "--account",
    "accounts",
    multiple=True,
    callback=checked(lambda refs: tuple(validate_account_ref(r) for r in refs)),
    help="The account ref (<name>/<key fingerprint>, as `reports list` shows it) whose requests to "
    "drop (repeat).",
)
@click.option("--unserved", is_flag=True, help="Every account ref no live worker serves.")
@click.option(
    "--older-than",
    "older_than_s",
    type=FiniteFloat(min=0.0),
    default=0.0,
    show_default=True,
    help="Only requests made more than this many seconds ago (0: all).",
)
def purge_cmd(accounts: tuple[str, ...], unserved: bool, older_than_s: float) -> None:
    """Drop report requests unsent (the tasks stay marked reported: they cannot be reported again)."""
    if not accounts and not unserved:
        raise InvalidArgument("give --account REF (see `captcha-queue reports list`) or --unserved")
    settings = get_settings()

    async def go() -> None:
        async with open_queue(settings) as q:
            refs = list(accounts)
            if unserved:
                refs += [b.account for b in await q.report_backlog() if b.workers == 0]
            total = 0
            for ref in dict.fromkeys(refs):
                dropped = await q.purge_reports(ref, older_than_s=older_than_s)
                total += len(dropped)
                click.echo(f"{ref}: {len(dropped)} report requests dropped")
            click.echo(f"{total} report requests dropped in all")

    run(go())


def backlog_table(backlog: list[ReportBacklog]) -> Table:
    table = Table(title="report requests (oldest first)")
    for column in ("account", "waiting", "taken", "oldest", "workers"):
        table.add_column(column, justify="left" if column == "account" else "right")
    now = time.time()
    for b in backlog:
        oldest = "?" if b.oldest_at is None else f"{max(0.0, now - b.oldest_at):.0f}s ago"
        workers = str(b.workers) if b.workers else "[red]0[/red]"
        table.add_row(esc(b.account), str(b.waiting), str(b.taken), oldest, workers)
    return table

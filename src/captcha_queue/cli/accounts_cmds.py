"""``captcha-queue accounts add/list/remove``: the namespace's solver accounts (queue/_accounts.py).

Keys are never given here: ``--key-env NAME`` names the environment variable a worker reads the key
from, ``--key-file PATH --key-entry ENTRY`` a secrets file (``entry=key`` lines) and its entry.
"""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.markup import escape as esc
from rich.table import Table

from ..errors import InvalidArgument
from ..models import AccountSpec
from ..queue._accounts import ACCOUNT_PROVIDERS
from .app import FiniteFloat, cli, connection_options, echo_json, get_settings, open_queue, run

__all__ = ["accounts_table"]


@cli.group("accounts")
def accounts_group() -> None:
    """The namespace's solver accounts: provider, URL, fleet limit, routing, key reference."""


@accounts_group.command("add")
@connection_options
@click.argument("name")
@click.option("--provider", type=click.Choice(ACCOUNT_PROVIDERS), default="captchaai", show_default=True)
@click.option("--url", "base_url", default=None, help="The service's base URL (default: the provider's).")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Fleet limit: solves in flight on this account (required unless the provider reports threads).",
)
@click.option("--priority", type=int, default=0, show_default=True, help="Routing: higher goes first.")
@click.option(
    "--cost",
    type=FiniteFloat(min=0.0),
    default=1.0,
    show_default=True,
    help="Routing among equal priorities: relative cost per solve, cheaper first.",
)
@click.option("--key-env", default=None, help="The environment variable that holds the API key on workers.")
@click.option("--key-file", default=None, help="A secrets file of entry=key lines, read by workers.")
@click.option("--key-entry", default=None, help="The entry of --key-file that holds this account's key.")
@click.option("--method", "methods", multiple=True, help="Only this method (repeat; default: every one).")
@click.option("--replace", is_flag=True, help="Replace an account of that name.")
@click.option("--json", "as_json", is_flag=True, help="Print the account as stored, as JSON.")
def add_cmd(
    name: str,
    provider: str,
    base_url: str | None,
    limit: int | None,
    priority: int,
    cost: float,
    key_env: str | None,
    key_file: str | None,
    key_entry: str | None,
    methods: tuple[str, ...],
    replace: bool,
    as_json: bool,
) -> None:
    """Register an account (validated; nothing is written on a bad field)."""
    settings = get_settings()
    spec = AccountSpec(
        name=name,
        provider=provider,
        base_url=base_url,
        limit=limit,
        priority=priority,
        cost=cost,
        key_env=key_env,
        key_file=key_file,
        key_entry=key_entry,
        methods=methods,
    )

    async def go() -> None:
        async with open_queue(settings) as q:
            stored = await q.add_account(spec, replace=replace)
        if as_json:
            echo_json(stored)
        else:
            click.echo(f"account {stored.name} ({stored.provider}) registered; key from {stored.key_source}")

    run(go())


@accounts_group.command("list")
@connection_options
@click.option("--json", "as_json", is_flag=True, help="A JSON array.")
def list_cmd(as_json: bool) -> None:
    """The accounts in routing order, with where each key is read from (never a key)."""
    settings = get_settings()

    async def go() -> None:
        async with open_queue(settings) as q:
            specs = await q.accounts()
        if as_json:
            echo_json(specs)
        elif not specs:
            click.echo("no accounts registered (captcha-queue accounts add NAME ...)")
        else:
            Console(highlight=False, emoji=False, width=160).print(accounts_table(specs))

    run(go())


@accounts_group.command("remove")
@connection_options
@click.argument("name")
def remove_cmd(name: str) -> None:
    """Remove an account from the registry (workers serving it keep it until they restart)."""
    settings = get_settings()

    async def go() -> int:
        async with open_queue(settings) as q:
            removed = await q.remove_account(name)
        if not removed:
            raise InvalidArgument(f"no account {name} registered", field="name")
        click.echo(f"account {name} removed")
        return 0

    sys.exit(run(go()))


def accounts_table(specs: list[AccountSpec]) -> Table:
    table = Table(title="accounts (routing order)")
    for column in ("name", "provider", "base URL", "limit", "priority", "cost", "methods", "key from"):
        table.add_column(column)
    for spec in specs:
        table.add_row(
            esc(spec.name),
            esc(spec.provider),
            esc(spec.base_url or "(provider's)"),
            str(spec.limit) if spec.limit is not None else "threads",
            str(spec.priority),
            f"{spec.cost:g}",
            esc(", ".join(spec.methods) or "all"),
            esc(spec.key_source),
        )
    return table

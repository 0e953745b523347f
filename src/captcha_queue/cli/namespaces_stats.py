"""``captcha-queue stats --namespaces a,b``: one row per namespace and their totals (or ``--json``).

The reading and the totals are the queue's (``queue/_namespaces.py``), shared with the dashboard's
overview across namespaces; this module prints them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape as esc
from rich.table import Table

from ..models import Stats
from ..queue._namespaces import namespace_list, namespace_totals, namespaces_doc, read_namespaces
from .app import echo_json, open_queue, run

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["namespace_list", "namespaces_doc", "namespaces_stats", "namespaces_table"]


def namespaces_table(per_namespace: dict[str, Stats], account: str) -> Table:
    """One row per namespace, then the totals."""
    table = Table(title=f"namespaces (solver slots of account {esc(account)})")
    columns = ("namespace", "queued", "delayed", "in flight", "done", "failed", "dead letters", "workers")
    for column in (*columns, "solver slots", "paused"):
        table.add_column(column, justify="left" if column in ("namespace", "paused") else "right")

    def slots(used: int, limit: int | None) -> str:
        return f"{used} / {'?' if limit is None else limit}"

    for ns, s in per_namespace.items():
        table.add_row(
            esc(ns),
            *map(
                str,
                (s.queued_total, s.delayed, s.in_flight, s.completed, s.failed, s.dead_letters, s.workers),
            ),
            slots(s.solver_slots_used, s.solver_slots_limit),
            esc(s.paused) if s.paused else "no",
        )
    t = namespace_totals(per_namespace)
    table.add_section()
    table.add_row(
        "total",
        *(
            str(t[k])
            for k in (
                "queued_total",
                "delayed",
                "in_flight",
                "completed",
                "failed",
                "dead_letters",
                "workers",
            )
        ),
        slots(t["solver_slots_used"], t["solver_slots_limit"]),
        ", ".join(t["paused"]) or "no",
    )
    return table


def namespaces_stats(
    settings: Settings, names: list[str], account: str, *, as_json: bool, watch: bool
) -> None:
    """Print the table (or the JSON document) of ``names``, read on one connection."""
    if watch:
        raise click.UsageError("--namespaces does not combine with --watch")

    async def go() -> None:
        async with open_queue(settings) as q:
            found = await read_namespaces(q.client, names, account)
        if as_json:
            echo_json(namespaces_doc(found))
            return
        console = Console(highlight=False, emoji=False)
        if not console.is_terminal:  # piped or captured: as wide as stats' own tables
            console = Console(highlight=False, emoji=False, width=max(console.width, 140))
        console.print(namespaces_table(found, account))

    run(go())

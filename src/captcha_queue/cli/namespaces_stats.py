"""``captcha-queue stats --namespaces a,b``: one row per namespace and their totals (or ``--json``).

The namespaces are named, not discovered: a fleet serving several (``worker --namespaces a:3,b:1``)
knows them, and a SCAN of a Cluster for them would visit every key of every shard. Each row is that
namespace's ``stats`` (one round trip each, routed to its slot's shard); the totals add them up
(the oldest queued task is the oldest of all; the slot limit is the sum of the namespaces' shares).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
import msgspec
from rich.console import Console
from rich.markup import escape as esc
from rich.table import Table

from ..errors import InvalidArgument
from ..models import PRIORITIES, Stats
from ..store.keys import validate_namespace
from .app import echo_json, open_queue, run

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["namespace_list", "namespaces_doc", "namespaces_stats", "namespaces_table", "totals"]

_SUMMED = (
    "delayed",
    "in_flight",
    "submitted",
    "completed",
    "failed",
    "dead",
    "cancelled",
    "expired",
    "dead_letters",
    "workers",
    "solver_slots_used",
)


def namespace_list(value: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``: namespace names separated by commas, each once (InvalidArgument)."""
    names = [n.strip() for n in value.split(",")]
    if not all(names):
        raise InvalidArgument("namespaces must be namespace names separated by commas", field="namespaces")
    for name in names:
        validate_namespace(name)
    return list(dict.fromkeys(names))


def totals(per_namespace: dict[str, Stats]) -> dict[str, Any]:
    """The sums over namespaces (see the module docstring)."""
    rows = list(per_namespace.values())
    doc: dict[str, Any] = {field: sum(getattr(s, field) for s in rows) for field in _SUMMED}
    doc["queued"] = {p: sum(s.queued.get(p, 0) for s in rows) for p in PRIORITIES}
    doc["queued_total"] = sum(s.queued_total for s in rows)
    limits = [s.solver_slots_limit for s in rows]
    doc["solver_slots_limit"] = None if any(x is None for x in limits) else sum(x or 0 for x in limits)
    ages = [s.oldest_queued_age_s for s in rows if s.oldest_queued_age_s is not None]
    doc["oldest_queued_age_s"] = max(ages) if ages else None
    doc["paused"] = sorted(ns for ns, s in per_namespace.items() if s.paused)
    return doc


def namespaces_doc(per_namespace: dict[str, Stats]) -> dict[str, Any]:
    """The ``--json`` document: ``{"namespaces": {name: stats...}, "totals": {...}}``."""
    namespaces: dict[str, Any] = {}
    for ns, stats in per_namespace.items():
        doc: dict[str, Any] = msgspec.to_builtins(stats)
        doc["queued_total"] = stats.queued_total
        namespaces[ns] = doc
    return {"namespaces": namespaces, "totals": totals(per_namespace)}


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
    t = totals(per_namespace)
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
    from ..queue._producer import AsyncCaptchaQueue

    async def go() -> None:
        async with open_queue(settings) as q:
            found = {ns: await AsyncCaptchaQueue(q.client, namespace=ns).stats(account) for ns in names}
        if as_json:
            echo_json(namespaces_doc(found))
            return
        console = Console(highlight=False, emoji=False)
        if not console.is_terminal:  # piped or captured: as wide as stats' own tables
            console = Console(highlight=False, emoji=False, width=max(console.width, 140))
        console.print(namespaces_table(found, account))

    run(go())

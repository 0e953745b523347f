"""Several namespaces read together: the one reading ``stats --namespaces`` and the dashboard's
overview across namespaces share (one owner).

The namespaces are named, not discovered: a fleet serving several (``worker --namespaces a:3,b:1``)
knows them, and a SCAN of a Cluster for them would visit every key of every shard. Each namespace's
``stats`` is one round trip on the caller's client, routed to its slot's shard; ``namespace_totals``
adds them up (the oldest queued task is the oldest of all; the slot limit is the sum of the
namespaces' shares).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import redis.asyncio as aioredis

from ..errors import InvalidArgument
from ..models import PRIORITIES, Stats
from ..store.keys import validate_namespace
from ._producer import AsyncCaptchaQueue

__all__ = ["namespace_list", "namespace_totals", "namespaces_doc", "read_namespaces"]

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


def namespace_list(value: str | Iterable[str]) -> list[str]:
    """``"a,b"`` (or ``["a", "b"]``) -> ``["a", "b"]``: namespace names, each once (InvalidArgument)."""
    raw = value.split(",") if isinstance(value, str) else list(value)
    names = [n.strip() if isinstance(n, str) else n for n in raw]
    if not names or not all(names):
        raise InvalidArgument("namespaces must be namespace names separated by commas", field="namespaces")
    for name in names:
        validate_namespace(name)
    return list(dict.fromkeys(names))


async def read_namespaces(
    client: aioredis.Redis, names: Iterable[str], account: str = "default"
) -> dict[str, Stats]:
    """Each namespace's ``stats(account)``, in the order given, read on ``client`` (not closed)."""
    return {ns: await AsyncCaptchaQueue(client, namespace=ns).stats(account) for ns in namespace_list(names)}


def namespace_totals(per_namespace: dict[str, Stats]) -> dict[str, Any]:
    """The sums over namespaces (see the module docstring); ``paused``: the paused namespaces."""
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
    """The JSON document: ``{"namespaces": {name: stats...}, "totals": {...}}``."""
    namespaces: dict[str, Any] = {}
    for ns, stats in per_namespace.items():
        doc: dict[str, Any] = msgspec.to_builtins(stats)
        doc["queued_total"] = stats.queued_total
        namespaces[ns] = doc
    return {"namespaces": namespaces, "totals": namespace_totals(per_namespace)}

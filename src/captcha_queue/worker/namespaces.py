"""One worker process serving several namespaces with weights (``captcha-queue worker --namespaces a:3,b:1``):
the parts; ``process.py`` assembles them.

Each namespace gets a ``Worker`` of its own (its queue, claim loop, leases, breaker, reports), all on
the process's one solver account and one Redis client. On a Redis Cluster each namespace is one hash
slot, so one fleet keeps every shard that holds one of its namespaces busy.

The account's fleet limit N must hold across namespaces, and each namespace's slots live under its
own hash tag (``{a}:slots:<account>``): one script cannot count both. So the split is **static**:
each namespace gets ``weighted_shares(N, weights)`` slots (and ``weighted_shares(C, weights)`` of
the process's concurrency C), proportional to its weight, at least 1, summing to exactly N (C).
Every namespace's limiter enforces its share fleet-wide, so the account never has more than N
solves in flight as long as every process serving these namespaces gives the same weights. The
price: a share left idle (its namespace empty) is not lent to the others.

The process's metrics keep their series (summed over namespaces) and add a ``namespace`` label
where a value is per namespace (``captcha_queue_namespace_*``); ``/readyz`` checks the limit and the
account's pause per namespace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..errors import CaptchaQueueError
from ..models import Result
from .health import Check, Readiness
from .metrics import STATUSES, ForwardingEvents

if TYPE_CHECKING:
    from ..queue._producer import AsyncCaptchaQueue
    from .metrics import WorkerMetrics

__all__ = [
    "NamespaceEvents",
    "NamespaceSeries",
    "NamespacesReadiness",
    "NamespacesState",
    "knows_limit",
    "refresh_queued",
    "weighted_shares",
]

log = logging.getLogger("captcha_queue.worker")


def weighted_shares(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` into one integer share per weight, proportional to it, each at least 1, summing
    to ``total``: floor of the exact share (at least 1), then the rest one by one to the largest
    remainders (ties: the earlier namespace), or taken back from the shares most above their exact
    value. ``weighted_shares(4, [3, 1]) == [3, 1]``; ``weighted_shares(5, [1, 1]) == [3, 2]``.
    ValueError if ``total`` is smaller than the number of weights, or a weight is not positive."""
    if not weights or any(w < 1 for w in weights):
        raise ValueError("weights must be positive")
    if total < len(weights):
        raise ValueError(f"{total} cannot be split into {len(weights)} shares of at least 1")
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    shares = [max(1, math.floor(x)) for x in exact]
    while sum(shares) < total:
        i = max(range(len(shares)), key=lambda j: (exact[j] - shares[j], -j))
        shares[i] += 1
    while sum(shares) > total:
        i = max((j for j in range(len(shares)) if shares[j] > 1), key=lambda j: (shares[j] - exact[j], j))
        shares[i] -= 1
    return shares


class NamespaceSeries:
    """The per-namespace series of a worker process (on the process's registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        prefix = "captcha_queue_namespace"
        self.finished = Counter(
            f"{prefix}_tasks_finished",
            "Tasks this process ended, by namespace and status.",
            ["namespace", "status"],
            registry=registry,
        )
        self.in_flight = Gauge(
            f"{prefix}_worker_in_flight",
            "Tasks this process holds now, by namespace.",
            ["namespace"],
            registry=registry,
        )
        self.slots_used = Gauge(
            f"{prefix}_solver_slots_used",
            "Fleet slots held in this namespace (every worker of it).",
            ["namespace"],
            registry=registry,
        )
        self.slots_limit = Gauge(
            f"{prefix}_solver_slots_limit",
            "This namespace's effective share of the account's fleet limit (NaN while unknown).",
            ["namespace"],
            registry=registry,
        )
        self.queued = Gauge(
            f"{prefix}_queued",
            "Tasks waiting to be claimed in the namespace (every priority), as last read.",
            ["namespace"],
            registry=registry,
        )

    def add(self, namespace: str) -> None:
        for status in STATUSES:
            self.finished.labels(namespace, status)
        self.in_flight.labels(namespace).set(0)
        self.slots_used.labels(namespace).set(0)
        self.slots_limit.labels(namespace).set(math.nan)
        self.queued.labels(namespace).set(0)


class NamespaceEvents(ForwardingEvents):
    """One namespace's worker events: the process's series (summed over namespaces where a worker
    sets a value of its own) plus the ``namespace``-labelled ones."""

    def __init__(
        self, metrics: WorkerMetrics, series: NamespaceSeries, namespace: str, state: NamespacesState
    ) -> None:
        super().__init__(metrics)
        self._series = series
        self.namespace = namespace
        self._state = state
        state.in_flight[namespace] = 0
        state.slots[namespace] = (0, None)
        state.unknown[namespace] = True
        series.add(namespace)

    @property
    def limit_known(self) -> bool:
        return not self._state.unknown[self.namespace]

    def task_finished(self, result: Result) -> None:
        self._m.task_finished(result)
        status = result.status if result.status in STATUSES else "error"
        self._series.finished.labels(self.namespace, status).inc()

    def set_in_flight(self, n: int) -> None:
        self._series.in_flight.labels(self.namespace).set(n)
        self._state.in_flight[self.namespace] = n
        self._m.set_in_flight(sum(self._state.in_flight.values()))

    def set_slots(self, used: int, limit: int | None) -> None:
        self._series.slots_used.labels(self.namespace).set(used)
        self._series.slots_limit.labels(self.namespace).set(math.nan if limit is None else limit)
        self._state.slots[self.namespace] = (used, limit)
        limits = [lim for _, lim in self._state.slots.values()]
        total = None if any(lim is None for lim in limits) else sum(lim for lim in limits if lim is not None)
        self._m.set_slots(sum(u for u, _ in self._state.slots.values()), total)

    def set_account_paused(self, paused: bool) -> None:
        self._m.set_account_paused(paused)

    def set_limit_unknown(self, unknown: bool) -> None:
        self._state.unknown[self.namespace] = unknown
        self._m.set_limit_unknown(any(self._state.unknown.values()))


@dataclasses.dataclass
class NamespacesState:
    in_flight: dict[str, int] = dataclasses.field(default_factory=dict)
    slots: dict[str, tuple[int, int | None]] = dataclasses.field(default_factory=dict)
    unknown: dict[str, bool] = dataclasses.field(default_factory=dict)


class NamespacesReadiness(Readiness):
    """``/readyz`` of a ``--namespaces`` process: ``redis`` and ``scripts`` once, then ``limit:<ns>``
    and ``account:<ns>`` (its pause there; with ``--accounts``, ready while one account is not
    paused) for each namespace; ready when every check passes.

    ``limit_known``: by namespace, whether its fleet limit is known now; ``account_ref``: the account
    every namespace serves, or by namespace the accounts it serves."""

    def __init__(
        self,
        queues: Mapping[str, AsyncCaptchaQueue],
        limit_known: Mapping[str, Callable[[], bool]],
        *,
        account_ref: str | Mapping[str, Sequence[str]],
    ) -> None:
        def refs(ns: str) -> str | Sequence[str]:
            return account_ref if isinstance(account_ref, str) else account_ref[ns]

        first = next(iter(queues))
        super().__init__(queues[first], account_ref=refs(first), limit_known=lambda: True)
        self._each = {
            ns: Readiness(q, account_ref=refs(ns), limit_known=limit_known[ns]) for ns, q in queues.items()
        }

    async def check(self) -> dict[str, Check]:
        checks = await super().check()
        del checks["limit"], checks["account"]
        for ns, readiness in self._each.items():
            each = await readiness.check() if checks["redis"].ok else None
            if each is None:
                checks[f"limit:{ns}"] = checks[f"account:{ns}"] = Check(
                    False, "not checked: Redis does not answer"
                )
                continue
            checks[f"limit:{ns}"] = each["limit"]
            checks[f"account:{ns}"] = each["account"]
        return checks


def knows_limit(events: NamespaceEvents) -> Callable[[], bool]:
    """Whether ``events``' namespace knows its fleet limit now (for ``NamespacesReadiness``)."""
    return lambda: events.limit_known


async def refresh_queued(
    series: NamespaceSeries, queues: dict[str, AsyncCaptchaQueue], interval_s: float
) -> None:
    """The per-namespace queue depth, every ``interval_s`` (a Redis outage only skips a round)."""
    while True:
        for ns, queue in queues.items():
            try:
                stats = await queue.stats()
            except CaptchaQueueError as exc:
                log.debug("metrics refresh of %s skipped: %s", ns, exc)
                continue
            series.queued.labels(ns).set(stats.queued_total)
        await asyncio.sleep(interval_s)

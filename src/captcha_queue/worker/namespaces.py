"""One worker process serving several namespaces with weights (``captcha-queue worker --namespaces a:3,b:1``).

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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..errors import CaptchaQueueError
from ..models import Claim, Result
from .config import parse_namespaces
from .health import Check, Readiness
from .metrics import STATUSES

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ..queue._producer import AsyncCaptchaQueue
    from .config import WorkerSettings
    from .metrics import WorkerMetrics

__all__ = ["NamespaceEvents", "NamespaceSeries", "NamespacesReadiness", "serve_namespaces", "weighted_shares"]

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


class NamespaceEvents:
    """One namespace's worker events: the process's series (summed over namespaces where a worker
    sets a value of its own) plus the ``namespace``-labelled ones."""

    def __init__(
        self, metrics: WorkerMetrics, series: NamespaceSeries, namespace: str, state: _State
    ) -> None:
        self._m = metrics
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

    def task_started(self, claim: Claim | None = None) -> None:
        self._m.task_started(claim)

    def task_finished(self, result: Result) -> None:
        self._m.task_finished(result)
        status = result.status if result.status in STATUSES else "error"
        self._series.finished.labels(self.namespace, status).inc()

    def retry(self, reason: str | BaseException = "transient") -> None:
        self._m.retry(reason)

    def solver_request(self, endpoint: str, code: str = "OK") -> None:
        self._m.solver_request(endpoint, code)

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

    def set_paused(self, paused: bool) -> None:
        self._m.set_paused(paused)

    def set_account_paused(self, paused: bool) -> None:
        self._m.set_account_paused(paused)

    def account_paused(self, code: str) -> None:
        self._m.account_paused(code)

    def set_limit_unknown(self, unknown: bool) -> None:
        self._state.unknown[self.namespace] = unknown
        self._m.set_limit_unknown(any(self._state.unknown.values()))

    def report(self, account: str, verdict: str, outcome: str) -> None:
        self._m.report(account, verdict, outcome)


@dataclasses.dataclass
class _State:
    in_flight: dict[str, int] = dataclasses.field(default_factory=dict)
    slots: dict[str, tuple[int, int | None]] = dataclasses.field(default_factory=dict)
    unknown: dict[str, bool] = dataclasses.field(default_factory=dict)


class NamespacesReadiness(Readiness):
    """``/readyz`` of a ``--namespaces`` process: ``redis`` and ``scripts`` once, then ``limit:<ns>``
    and ``account:<ns>`` (its pause there) for each namespace; ready when every check passes."""

    def __init__(
        self,
        queues: dict[str, AsyncCaptchaQueue],
        events: dict[str, NamespaceEvents],
        *,
        account_ref: str,
    ) -> None:
        first = next(iter(queues.values()))
        super().__init__(first, account_ref=account_ref, limit_known=lambda: True)
        self._each = {
            ns: Readiness(q, account_ref=account_ref, limit_known=_known(events[ns]))
            for ns, q in queues.items()
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


def _known(events: NamespaceEvents) -> Callable[[], bool]:
    return lambda: events.limit_known


async def _refresh_queued(
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


async def serve_namespaces(settings: WorkerSettings) -> int:
    """Run one Worker per namespace of ``settings.namespaces`` until SIGTERM/SIGINT (see the module
    docstring); 0 after a graceful stop."""
    from ..queue._producer import AsyncCaptchaQueue
    from ..solvers import create_solver
    from ..solvers.base import account_ref
    from ..store.connection import make_client
    from .health import READY_TIMEOUT_S
    from .metrics import WorkerMetrics
    from .process import reach_redis
    from .runtime import Worker
    from .supervisor import install_worker_signals

    pairs = parse_namespaces(settings.namespaces or "")
    names = [ns for ns, _ in pairs]
    weights = [w for _, w in pairs]
    concurrency = weighted_shares(settings.concurrency, weights)
    limits = weighted_shares(settings.solver_limit, weights) if settings.solver_limit is not None else None
    client = make_client(settings.redis_url, max_connections=max(16, min(128, settings.concurrency // 8)))
    solver_options: dict[str, Any] = {}
    if settings.solver != "instant":
        solver_options["api_key"] = settings.api_key
        solver_options["base_url"] = settings.provider_url
        solver_options["request_timeout_s"] = settings.request_timeout_s
        solver_options["thread_limit"] = settings.solver_limit
    solver = create_solver(
        settings.solver, account=settings.account, time_scale=settings.time_scale, **solver_options
    )
    metrics_server = None
    loops: list[asyncio.Task[None]] = []
    health_client: aioredis.Redis | None = None
    queues: dict[str, AsyncCaptchaQueue] = {}
    try:
        await reach_redis(settings.redis_url, settings.startup_timeout_s, client)
        queues = {ns: AsyncCaptchaQueue(client, namespace=ns) for ns in names}
        metrics = WorkerMetrics() if settings.metrics_port is not None else None
        series = NamespaceSeries(metrics.registry) if metrics is not None else None
        state = _State()
        events: dict[str, NamespaceEvents] = {}
        workers: list[Worker] = []
        for i, ns in enumerate(names):
            config = dataclasses.replace(
                settings,
                namespaces=None,
                namespace=ns,
                concurrency=concurrency[i],
                solver_limit=limits[i] if limits is not None else None,
            )
            if metrics is not None and series is not None:
                events[ns] = NamespaceEvents(metrics, series, ns, state)

            def share(threads: int, i: int = i) -> int | None:
                return weighted_shares(threads, weights)[i] if threads >= len(weights) else None

            workers.append(Worker(queues[ns], solver, config, events=events.get(ns), limit_share=share))
        if metrics is not None and series is not None:
            # The readiness checks get a client of their own: they never wait behind the workers' pool.
            health_client = make_client(
                settings.redis_url,
                max_connections=2,
                socket_timeout_s=READY_TIMEOUT_S,
                pool_timeout_s=READY_TIMEOUT_S,
            )
            readiness = NamespacesReadiness(
                {ns: AsyncCaptchaQueue(health_client, namespace=ns) for ns in names},
                events,
                account_ref=account_ref(solver.account, solver.key_fingerprint),
            )
            metrics_server = metrics.serve(
                settings.metrics_port or 0, settings.metrics_host, readiness=readiness.from_thread
            )
            log.info("metrics at %s (and /healthz, /readyz)", metrics_server.url)
            loops.append(asyncio.create_task(_refresh_queued(series, queues, 5.0), name="metrics"))
        log.info(
            "serving namespaces %s (concurrency %s, fleet limit %s)",
            ", ".join(f"{ns} (weight {w})" for ns, w in pairs),
            "/".join(map(str, concurrency)),
            "/".join(map(str, limits)) if limits is not None else "shares of the account's threads",
        )
        stopping = asyncio.Event()

        def stop() -> None:
            stopping.set()
            for worker in workers:
                worker.stop()

        install_worker_signals(asyncio.get_running_loop(), stop)
        runs = [
            asyncio.create_task(w.run(), name=f"namespace:{ns}") for ns, w in zip(names, workers, strict=True)
        ]
        try:
            # One namespace's worker failing (a bug, a start-up error) stops the others: one process.
            await asyncio.wait(runs, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            stop()
            outcomes = await asyncio.gather(*runs, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        if metrics_server is not None:
            metrics_server.close()
        for queue in queues.values():
            await queue.aclose()
        if health_client is not None:
            await health_client.aclose()
        await solver.aclose()
        await client.aclose()
    return 0

"""One worker process, as a library call: ``run_worker(WorkerSettings(...))``.

    from captcha_queue.worker import WorkerSettings, run_worker
    exit_code = run_worker(WorkerSettings(redis_url=url, api_key=key, concurrency=2000))

It is what ``captcha-queue worker --processes 1`` does: configure logging (the API key masked), reach
Redis (for up to ``startup_timeout_s``), build the queue, the solver and the metrics server, run a
``Worker`` until SIGTERM/SIGINT or an operator's drain request (``drain_worker``), shut down
gracefully (a supervised child that drained tells its supervisor, which does not restart it).
``processes`` is the command's business (``--processes P`` supervises P children, each of them this
call).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..errors import RedisUnavailable
from ..store.server import redact_url
from .config import WorkerSettings

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ..queue._producer import AsyncCaptchaQueue
    from ..solvers.base import Solver
    from .metrics import MetricsServer, WorkerMetrics

__all__ = ["EXIT_STARTUP_FAILED", "StartupFailed", "reach_redis", "run_loop", "run_worker"]

log = logging.getLogger("captcha_queue.worker")

#: A child of ``--processes P`` that could not reach Redis within ``--startup-timeout-s`` exits with
#: this code (EX_UNAVAILABLE); the supervisor then stops the fleet instead of restarting it.
EXIT_STARTUP_FAILED = 69


class StartupFailed(RedisUnavailable):
    """Redis could not be reached within the start-up timeout."""


def run_worker(settings: WorkerSettings) -> int:
    """Run one worker process until SIGTERM or SIGINT; return its exit code (0 after a graceful stop).

    Raises ConfigError (no API key for the captchaai solver), StartupFailed (Redis unreachable for
    ``startup_timeout_s``) or RedisUnavailable (a wrong Redis password)."""
    from .logs import configure_logging

    if settings.accounts is not None:
        configure_logging(settings.log_format, getattr(logging, settings.log_level.upper()))
        if settings.namespaces is not None:
            return run_loop(_serve_namespaces_accounts(settings))
        return run_loop(_serve_accounts(settings))
    if settings.solver != "instant" and not settings.api_key:
        from ..errors import ConfigError

        raise ConfigError("CAPTCHAAI_KEY is not set")
    secrets = [settings.api_key] if settings.api_key else []
    configure_logging(settings.log_format, getattr(logging, settings.log_level.upper()), secrets=secrets)
    if settings.namespaces is not None:
        return run_loop(_serve_namespaces(settings))
    return run_loop(_serve(settings))


def run_loop(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when the ``fast`` extra is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return int(asyncio.run(coro))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return int(runner.run(coro))


async def reach_redis(url: str, timeout_s: float, client: aioredis.Redis | None = None) -> None:
    """Ping Redis (and check its version) until it answers, for up to ``timeout_s``; then raise
    StartupFailed. A fleet may start before its Redis; it must not wait forever either."""
    import redis

    from ..store.connection import check_server, make_client, unfenced_primary

    own = client is None
    if client is None:
        client = make_client(url, max_connections=2)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = 0.1
    try:
        while True:
            try:
                await check_server(client)
                warning = await unfenced_primary(client)
                if warning is not None:
                    log.warning("%s", warning)
                return
            except RedisUnavailable as exc:
                if isinstance(exc.__cause__, redis.AuthenticationError):
                    raise  # a wrong password does not get better with time
                if loop.time() + delay > deadline:
                    reason = str(exc).split(": ", 1)[-1] if str(exc).startswith("cannot reach ") else str(exc)
                    raise StartupFailed(
                        f"cannot reach Redis at {redact_url(url)} within {timeout_s:g} s "
                        f"(--startup-timeout-s): {reason}"
                    ) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    finally:
        if own:
            await client.aclose()


def _health_client(settings: WorkerSettings) -> aioredis.Redis:
    """The readiness checks' own client: they never wait behind the workers' pool."""
    from ..store.connection import make_client
    from .health import READY_TIMEOUT_S

    return make_client(
        settings.redis_url,
        max_connections=2,
        socket_timeout_s=READY_TIMEOUT_S,
        pool_timeout_s=READY_TIMEOUT_S,
    )


def _serve_metrics(metrics: WorkerMetrics, settings: WorkerSettings, readiness: Any) -> MetricsServer:
    """/metrics, /healthz and /readyz (``readiness.from_thread``) on the configured host and port."""
    server = metrics.serve(settings.metrics_port or 0, settings.metrics_host, readiness=readiness.from_thread)
    log.info("metrics at %s (and /healthz, /readyz)", server.url)
    return server


async def _serve(settings: WorkerSettings) -> int:
    from ..queue._producer import AsyncCaptchaQueue
    from ..solvers import create_solver
    from ..store.connection import make_client
    from .events import WorkerEvents
    from .runtime import Worker
    from .supervisor import install_worker_signals, report_drained

    # Blocking claims, renewals, the slot pump and many concurrent final writes share this pool.
    client = make_client(settings.redis_url, max_connections=max(16, min(128, settings.concurrency // 8)))
    solver_options: dict[str, Any] = {}
    if settings.solver != "instant":  # a provider (solvers/profiles.py)
        solver_options["api_key"] = settings.api_key
        solver_options["base_url"] = settings.provider_url
        solver_options["request_timeout_s"] = settings.request_timeout_s
        solver_options["thread_limit"] = settings.solver_limit
    solver = create_solver(
        settings.solver, account=settings.account, time_scale=settings.time_scale, **solver_options
    )
    metrics_server = None
    events: WorkerEvents | None = None
    refresher: asyncio.Task[None] | None = None
    health_client: aioredis.Redis | None = None
    try:
        await reach_redis(settings.redis_url, settings.startup_timeout_s, client)
        queue = AsyncCaptchaQueue(client, namespace=settings.namespace)
        if settings.metrics_port is not None:
            from ..solvers.base import account_ref
            from .health import Readiness
            from .metrics import WorkerMetrics

            metrics = WorkerMetrics()
            health_client = _health_client(settings)
            readiness = Readiness(
                AsyncCaptchaQueue(health_client, namespace=settings.namespace),
                account_ref=account_ref(solver.account, solver.key_fingerprint),
                limit_known=lambda: metrics.limit_known,
            )
            metrics_server = _serve_metrics(metrics, settings, readiness)
            refresher = asyncio.create_task(metrics.run_refresher(queue, interval_s=5.0), name="metrics")
            events = metrics
        worker = Worker(queue, solver, settings, events=events)
        install_worker_signals(asyncio.get_running_loop(), worker.stop)
        await worker.run()
        await queue.aclose()
        if worker.drain is not None:
            report_drained()
    finally:
        if refresher is not None:
            refresher.cancel()
        if metrics_server is not None:
            metrics_server.close()
        if health_client is not None:
            await health_client.aclose()
        await solver.aclose()
        await client.aclose()
    return 0


async def _serve_accounts(settings: WorkerSettings) -> int:
    """``--accounts``: one Worker per registered account under one routing claim loop (multi.py)."""
    from ..errors import ConfigError
    from ..queue._producer import AsyncCaptchaQueue
    from ..store.connection import make_client
    from .accounts import account_workers, resolve_key
    from .config import account_names
    from .logs import configure_logging
    from .multi import MultiWorker
    from .supervisor import install_worker_signals, report_drained

    client = make_client(settings.redis_url, max_connections=max(16, min(128, settings.concurrency // 8)))
    solvers: list[Solver] = []
    metrics_server = None
    refresher: asyncio.Task[None] | None = None
    health_client: aioredis.Redis | None = None
    try:
        await reach_redis(settings.redis_url, settings.startup_timeout_s, client)
        queue = AsyncCaptchaQueue(client, namespace=settings.namespace)
        registered = await queue.accounts()
        wanted = account_names(settings.accounts)
        if wanted is not None:
            unknown = sorted(set(wanted) - {a.name for a in registered})
            if unknown:
                raise ConfigError(f"no registered account {', '.join(unknown)} (captcha-queue accounts list)")
            registered = [a for a in registered if a.name in wanted]
        if not registered:
            raise ConfigError(
                "no accounts registered in this namespace (captcha-queue accounts add NAME ...)"
            )
        keys = {spec.name: resolve_key(spec) for spec in registered}
        configure_logging(
            settings.log_format, getattr(logging, settings.log_level.upper()), secrets=list(keys.values())
        )
        metrics = None
        if settings.metrics_port is not None:
            from .metrics import WorkerMetrics

            metrics = WorkerMetrics()
        workers = account_workers(
            queue,
            registered,
            settings,
            keys=keys,
            metrics=metrics,
            request_timeout_s=settings.request_timeout_s,
        )
        solvers.extend(worker.solver for _, worker in workers)
        if metrics is not None:
            from .health import Readiness

            health_client = _health_client(settings)
            readiness = Readiness(
                AsyncCaptchaQueue(health_client, namespace=settings.namespace),
                account_ref=[worker.solver.account_ref for _, worker in workers],
                limit_known=lambda: metrics is not None and metrics.limit_known,
            )
            metrics_server = _serve_metrics(metrics, settings, readiness)
            refresher = asyncio.create_task(metrics.run_refresher(queue, interval_s=5.0), name="metrics")
        log.info(
            "serving accounts %s (routing order)",
            ", ".join(f"{s.name} ({s.provider}, limit {s.limit or 'threads'})" for s, _ in workers),
        )
        multi = MultiWorker(queue, workers, settings)
        for _, account_worker in workers:
            account_worker.on_drain = multi.stop  # a drain request for any of them drains the process
        install_worker_signals(asyncio.get_running_loop(), multi.stop)
        await multi.run()
        await queue.aclose()
        if any(w.drain is not None for _, w in workers):
            report_drained()
    finally:
        if refresher is not None:
            refresher.cancel()
        if metrics_server is not None:
            metrics_server.close()
        if health_client is not None:
            await health_client.aclose()
        for solver in solvers:
            await solver.aclose()
        await client.aclose()
    return 0


async def _serve_namespaces(settings: WorkerSettings) -> int:
    """``--namespaces``: one Worker per namespace, each with its weighted share of the account's limit
    and of the concurrency (namespaces.py), until SIGTERM/SIGINT; 0 after a graceful stop."""
    from ..queue._producer import AsyncCaptchaQueue
    from ..solvers import create_solver
    from ..solvers.base import account_ref
    from ..store.connection import make_client
    from .config import parse_namespaces
    from .metrics import WorkerMetrics
    from .namespaces import (
        NamespaceEvents,
        NamespaceSeries,
        NamespacesReadiness,
        NamespacesState,
        knows_limit,
        refresh_queued,
        weighted_shares,
    )
    from .runtime import Worker
    from .supervisor import install_worker_signals, report_drained

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
        state = NamespacesState()
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
            health_client = _health_client(settings)
            readiness = NamespacesReadiness(
                {ns: AsyncCaptchaQueue(health_client, namespace=ns) for ns in names},
                {ns: knows_limit(events[ns]) for ns in names},
                account_ref=account_ref(solver.account, solver.key_fingerprint),
            )
            metrics_server = _serve_metrics(metrics, settings, readiness)
            loops.append(asyncio.create_task(refresh_queued(series, queues, 5.0), name="metrics"))
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

        for worker in workers:
            worker.on_drain = stop  # a drain request for one namespace's worker drains the process

        install_worker_signals(asyncio.get_running_loop(), stop)
        runs = [
            asyncio.create_task(w.run(), name=f"namespace:{ns}") for ns, w in zip(names, workers, strict=True)
        ]
        await _run_together(runs, stop)
        if any(w.drain is not None for w in workers):
            report_drained()
    finally:
        await _close_namespaces(loops, metrics_server, queues, health_client, [solver], client)
    return 0


async def _serve_namespaces_accounts(settings: WorkerSettings) -> int:
    """``--namespaces`` with ``--accounts``: per namespace, a MultiWorker over the accounts registered
    there, with its weighted share of the concurrency and of each account it shares with other
    namespaces (namespace_accounts.py), until SIGTERM/SIGINT; 0 after a graceful stop."""
    from ..models import AccountSpec
    from ..queue._producer import AsyncCaptchaQueue
    from ..solvers.base import account_ref
    from ..store.connection import make_client
    from .accounts import resolve_key, solver_for_account
    from .config import account_names, parse_namespaces
    from .logs import configure_logging
    from .metrics import WorkerMetrics
    from .multi import MultiWorker
    from .namespace_accounts import MixedEvents, MixedState, share_accounts
    from .namespaces import NamespaceSeries, NamespacesReadiness, refresh_queued, weighted_shares
    from .runtime import Worker
    from .supervisor import install_worker_signals, report_drained

    pairs = parse_namespaces(settings.namespaces or "")
    names = [ns for ns, _ in pairs]
    concurrency = dict(zip(names, weighted_shares(settings.concurrency, [w for _, w in pairs]), strict=True))
    client = make_client(settings.redis_url, max_connections=max(16, min(128, settings.concurrency // 8)))
    solvers: dict[str, Solver] = {}
    loops: list[asyncio.Task[None]] = []
    metrics_server = None
    health_client: aioredis.Redis | None = None
    queues: dict[str, AsyncCaptchaQueue] = {}
    try:
        await reach_redis(settings.redis_url, settings.startup_timeout_s, client)
        queues = {ns: AsyncCaptchaQueue(client, namespace=ns) for ns in names}
        registered = {ns: await queue.accounts() for ns, queue in queues.items()}
        plan = share_accounts(registered, dict(pairs), account_names(settings.accounts))
        keys = {share.spec.name: resolve_key(share.spec) for shares in plan.values() for share in shares}
        configure_logging(
            settings.log_format, getattr(logging, settings.log_level.upper()), secrets=list(keys.values())
        )
        metrics = WorkerMetrics() if settings.metrics_port is not None else None
        series = NamespaceSeries(metrics.registry) if metrics is not None else None
        state = MixedState()
        multis: dict[str, MultiWorker] = {}
        refs: dict[str, list[str]] = {}
        for ns, shares in plan.items():
            config = dataclasses.replace(settings, namespaces=None, namespace=ns, concurrency=concurrency[ns])
            workers: list[tuple[AccountSpec, Worker]] = []
            for share in shares:
                spec = share.spec
                solver = solvers.get(spec.name)
                if solver is None:  # one client per account, whichever namespaces share it (alike)
                    solver = solvers[spec.name] = solver_for_account(
                        spec,
                        keys[spec.name],
                        time_scale=settings.time_scale,
                        request_timeout_s=settings.request_timeout_s,
                    )
                events = (
                    MixedEvents(metrics, series, ns, spec.name, state)
                    if metrics is not None and series is not None
                    else None
                )
                worker_config = dataclasses.replace(config, solver_limit=share.limit)
                workers.append(
                    (
                        spec,
                        Worker(
                            queues[ns], solver, worker_config, events=events, limit_share=share.of_threads
                        ),
                    )
                )
            refs[ns] = [account_ref(w.solver.account, w.solver.key_fingerprint) for _, w in workers]
            multis[ns] = MultiWorker(queues[ns], workers, config)
        if metrics is not None and series is not None:
            health_client = _health_client(settings)
            readiness = NamespacesReadiness(
                {ns: AsyncCaptchaQueue(health_client, namespace=ns) for ns in names},
                {ns: state.namespace_known(ns) for ns in names},
                account_ref=refs,
            )
            metrics_server = _serve_metrics(metrics, settings, readiness)
            loops.append(asyncio.create_task(refresh_queued(series, queues, 5.0), name="metrics"))
        for ns, shares in plan.items():
            log.info(
                "namespace %s (concurrency %d) serves accounts %s (routing order)",
                ns,
                concurrency[ns],
                ", ".join(f"{s.spec.name} (limit {s.limit or 'a share of its threads'})" for s in shares),
            )

        def stop() -> None:
            for multi in multis.values():
                multi.stop()

        for multi in multis.values():
            for _, account_worker in multi.accounts:
                account_worker.on_drain = stop  # a drain request for any of them drains the process
        install_worker_signals(asyncio.get_running_loop(), stop)
        runs = [asyncio.create_task(m.run(), name=f"namespace:{ns}") for ns, m in multis.items()]
        await _run_together(runs, stop)
        if any(w.drain is not None for m in multis.values() for _, w in m.accounts):
            report_drained()
    finally:
        await _close_namespaces(loops, metrics_server, queues, health_client, list(solvers.values()), client)
    return 0


async def _run_together(runs: list[asyncio.Task[None]], stop: Callable[[], None]) -> None:
    """Until every run ends; one failing (a bug, a start-up error) stops the others: one process.
    Re-raises the first failure."""
    try:
        await asyncio.wait(runs, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        stop()
        outcomes = await asyncio.gather(*runs, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def _close_namespaces(
    loops: list[asyncio.Task[None]],
    metrics_server: MetricsServer | None,
    queues: dict[str, AsyncCaptchaQueue],
    health_client: aioredis.Redis | None,
    solvers: list[Solver],
    client: aioredis.Redis,
) -> None:
    """Close what a process serving several namespaces opened, in the reverse order."""
    for loop in loops:
        loop.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    if metrics_server is not None:
        metrics_server.close()
    for queue in queues.values():
        await queue.aclose()
    if health_client is not None:
        await health_client.aclose()
    for solver in solvers:
        await solver.aclose()
    await client.aclose()

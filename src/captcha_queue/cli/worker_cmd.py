"""``captcha-queue worker``: run (and with ``--processes P``, supervise) worker processes."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigError, RedisUnavailable
from ..store.keys import validate_account
from ..store.server import redact_url
from .app import FiniteFloat, checked, cli, get_settings
from .config import ENV_CAPTCHAAI_KEY, ENV_CAPTCHAAI_URL, ENV_REDIS_URL, Settings

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["WorkerOptions", "worker_cmd"]

log = logging.getLogger("captcha_queue.worker")

#: A child of ``--processes P`` that could not reach Redis within ``--startup-timeout-s`` exits with
#: this code (EX_UNAVAILABLE); the supervisor then stops the fleet instead of restarting it.
EXIT_STARTUP_FAILED = 69


@dataclass(frozen=True)
class WorkerOptions:
    processes: int
    concurrency: int
    lease_s: float
    solver_limit: int | None
    time_scale: float
    solver: str
    metrics_port: int | None
    log_format: str
    log_level: str
    account: str
    grace_s: float
    resume_window_s: float
    orphan_hold_s: float = 180.0
    request_timeout_s: float = 30.0
    startup_timeout_s: float = 30.0
    busy_pause_after: int = 20
    busy_pause_s: float = 60.0


@cli.command("worker")
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes to run and supervise [default: CPU count].",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Tasks in flight per process.",
)
@click.option("--lease-s", type=FiniteFloat(min=0.1), default=30.0, show_default=True, help="Task lease.")
@click.option(
    "--solver-limit",
    type=click.IntRange(min=1),
    default=None,
    help="Fleet-wide solves in flight (N) [default: the account's threads from threadsinfo].",
)
@click.option(
    "--time-scale",
    type=FiniteFloat(min=0.0, min_open=True),
    default=1.0,
    show_default=True,
    help="Scale poll delays, backoffs and probes (for a time-scaled simulator).",
)
@click.option(
    "--solver",
    "solver_kind",
    type=click.Choice(["captchaai", "instant"]),
    default="captchaai",
    show_default=True,
    help="captchaai: the HTTP service (or the simulator); instant: answers in process.",
)
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, help="Serve /metrics here.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
@click.option(
    "--account",
    default="default",
    show_default=True,
    callback=checked(validate_account),
    help="Solver account name (fleet-wide limit key).",
)
@click.option("--grace-s", type=FiniteFloat(min=0.0), default=30.0, show_default=True, help="Shutdown grace.")
@click.option(
    "--resume-window-s",
    type=FiniteFloat(min=0.0),
    default=600.0,
    show_default=True,
    help="Resume a reclaimed task's remote id if it is younger than this (time-scaled).",
)
@click.option(
    "--orphan-hold-s",
    type=FiniteFloat(min=0.0),
    default=180.0,
    show_default=True,
    help="How long a solve left running at the service by a dead or stalled worker keeps its "
    "fleet slot: the longest a solve takes there (time-scaled).",
)
@click.option(
    "--request-timeout-s",
    type=FiniteFloat(min=0.1),
    default=30.0,
    show_default=True,
    help="Give up one in.php / res.php request after this long (real seconds, not scaled).",
)
@click.option(
    "--startup-timeout-s",
    type=FiniteFloat(min=0.0),
    default=30.0,
    show_default=True,
    help="Keep trying to reach Redis at start-up for this long, then exit non-zero (real seconds).",
)
@click.option("--supervised", is_flag=True, hidden=True, help="Set by --processes P on its children.")
@click.option(
    "--busy-pause-after",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Busy answers in a row (no free thread, zero balance...) after which the account is paused "
    "for --busy-pause-s; its tasks go back to the queue.",
)
@click.option(
    "--busy-pause-s",
    type=FiniteFloat(min=0.0, min_open=True, max=1e9),
    default=60.0,
    show_default=True,
    help="How long busy answers that did not clear pause the account (time-scaled).",
)
@click.option("--namespace", default=None, help="Queue namespace [env: CAPTCHA_QUEUE_NAMESPACE].")
@click.option("--redis-url", default=None, help="Redis URL [env: REDIS_URL].")
@click.option("--solver-url", default=None, help="Solver base URL [env: CAPTCHAAI_URL].")
def worker_cmd(
    processes: int | None,
    concurrency: int,
    lease_s: float,
    solver_limit: int | None,
    time_scale: float,
    solver_kind: str,
    metrics_port: int | None,
    log_format: str,
    log_level: str,
    account: str,
    grace_s: float,
    resume_window_s: float,
    orphan_hold_s: float,
    request_timeout_s: float,
    startup_timeout_s: float,
    supervised: bool,
    busy_pause_after: int,
    busy_pause_s: float,
    namespace: str | None,
    redis_url: str | None,
    solver_url: str | None,
) -> None:
    """Run worker processes: claim tasks, solve them, write the results.

    The API key comes from CAPTCHAAI_KEY (or the root --captchaai-key-file); it is never logged.
    """
    base = get_settings()
    settings = Settings.load(
        redis_url=redis_url or base.redis_url,
        namespace=namespace or base.namespace,
        captchaai_url=solver_url or base.captchaai_url,
        captchaai_key=base.captchaai_key,
    )
    opts = WorkerOptions(
        processes=processes or (os.cpu_count() or 1),
        concurrency=concurrency,
        lease_s=lease_s,
        solver_limit=solver_limit,
        time_scale=time_scale,
        solver=solver_kind,
        metrics_port=metrics_port,
        log_format=log_format,
        log_level=log_level,
        account=account,
        grace_s=grace_s,
        resume_window_s=resume_window_s,
        orphan_hold_s=orphan_hold_s,
        request_timeout_s=request_timeout_s,
        startup_timeout_s=startup_timeout_s,
        busy_pause_after=busy_pause_after,
        busy_pause_s=busy_pause_s,
    )
    if solver_kind == "captchaai":
        settings.require_key()
    from ..worker.logs import configure_logging

    secrets = [settings.captchaai_key] if settings.captchaai_key else []
    configure_logging(log_format, getattr(logging, log_level.upper()), secrets=secrets)
    if opts.processes > 1:
        sys.exit(_supervise(opts, settings))
    try:
        code = _run_loop(_run_one(opts, settings))
    except _StartupFailed as exc:
        if not supervised:
            raise
        click.echo(f"error: {exc}", err=True)
        code = EXIT_STARTUP_FAILED
    sys.exit(code)


def _run_loop(coro: Any) -> int:
    """Run on uvloop when the ``fast`` extra is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return int(asyncio.run(coro))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return int(runner.run(coro))


def _child_args(opts: WorkerOptions, settings: Settings, index: int) -> list[str]:
    args = [
        "--processes",
        "1",
        "--concurrency",
        str(opts.concurrency),
        "--lease-s",
        repr(opts.lease_s),
        "--time-scale",
        repr(opts.time_scale),
        "--solver",
        opts.solver,
        "--log-format",
        opts.log_format,
        "--log-level",
        opts.log_level,
        "--account",
        opts.account,
        "--grace-s",
        repr(opts.grace_s),
        "--resume-window-s",
        repr(opts.resume_window_s),
        "--orphan-hold-s",
        repr(opts.orphan_hold_s),
        "--request-timeout-s",
        repr(opts.request_timeout_s),
        "--startup-timeout-s",
        repr(opts.startup_timeout_s),
        "--supervised",
        "--busy-pause-after",
        str(opts.busy_pause_after),
        "--busy-pause-s",
        repr(opts.busy_pause_s),
        "--namespace",
        settings.namespace,
    ]
    if opts.solver_limit is not None:
        args += ["--solver-limit", str(opts.solver_limit)]
    if opts.metrics_port is not None:
        args += ["--metrics-port", str(opts.metrics_port + index if opts.metrics_port else 0)]
    return args


def _supervise(opts: WorkerOptions, settings: Settings) -> int:
    from ..worker.supervisor import Supervisor, child_argv

    argvs: Sequence[list[str]] = [child_argv(_child_args(opts, settings, i)) for i in range(opts.processes)]
    supervisor = Supervisor(
        argvs, env=_child_env(settings), grace_s=opts.grace_s, give_up_code=EXIT_STARTUP_FAILED
    )

    async def supervise() -> int:
        # Redis unreachable: fail here, once, as one process would, before any child starts.
        await _reach_redis(settings.redis_url, opts.startup_timeout_s)
        return await supervisor.run()

    return _run_loop(supervise())


def _child_env(settings: Settings) -> dict[str, str]:
    """The children's environment. The Redis URL (its password), the solver URL and the API key
    travel here, never on a command line, where any local user could read them (``ps``)."""
    env = dict(os.environ)
    env[ENV_REDIS_URL] = settings.redis_url
    env[ENV_CAPTCHAAI_URL] = settings.captchaai_url
    if settings.captchaai_key:
        env[ENV_CAPTCHAAI_KEY] = settings.captchaai_key
    return env


class _StartupFailed(RedisUnavailable):
    """Redis could not be reached within the start-up timeout."""


async def _reach_redis(url: str, timeout_s: float, client: aioredis.Redis | None = None) -> None:
    """Ping Redis (and check its version) until it answers, for up to ``timeout_s``; then raise
    _StartupFailed. A fleet may start before its Redis; it must not wait forever either."""
    import redis

    from ..store.connection import check_server, make_client

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
                return
            except RedisUnavailable as exc:
                if isinstance(exc.__cause__, redis.AuthenticationError):
                    raise  # a wrong password does not get better with time
                if loop.time() + delay > deadline:
                    reason = str(exc).split(": ", 1)[-1] if str(exc).startswith("cannot reach ") else str(exc)
                    raise _StartupFailed(
                        f"cannot reach Redis at {redact_url(url)} within {timeout_s:g} s "
                        f"(--startup-timeout-s): {reason}"
                    ) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    finally:
        if own:
            await client.aclose()


async def _run_one(opts: WorkerOptions, settings: Settings) -> int:
    from ..queue._producer import AsyncCaptchaQueue
    from ..solvers import create_solver
    from ..store.connection import make_client
    from ..worker.events import WorkerEvents
    from ..worker.limiter import LimiterConfig
    from ..worker.runtime import Worker, WorkerConfig
    from ..worker.supervisor import install_worker_signals

    # Blocking claims, renewals, the slot pump and many concurrent final writes share this pool.
    client = make_client(settings.redis_url, max_connections=max(16, min(128, opts.concurrency // 8)))
    solver_options: dict[str, Any] = {}
    if opts.solver == "captchaai":
        solver_options["api_key"] = settings.require_key()
        solver_options["base_url"] = settings.captchaai_url
        solver_options["request_timeout_s"] = opts.request_timeout_s
    solver = create_solver(opts.solver, account=opts.account, time_scale=opts.time_scale, **solver_options)
    metrics_server = None
    events: WorkerEvents | None = None
    refresher: asyncio.Task[None] | None = None
    try:
        await _reach_redis(settings.redis_url, opts.startup_timeout_s, client)
        queue = AsyncCaptchaQueue(client, namespace=settings.namespace)
        if opts.metrics_port is not None:
            from ..worker.metrics import WorkerMetrics

            metrics = WorkerMetrics()
            metrics_server = metrics.serve(opts.metrics_port)
            log.info("metrics at %s", metrics_server.url)
            refresher = asyncio.create_task(metrics.run_refresher(queue, interval_s=5.0), name="metrics")
            events = metrics
        config = WorkerConfig(
            concurrency=opts.concurrency,
            lease_s=opts.lease_s,
            solver_limit=opts.solver_limit,
            time_scale=opts.time_scale,
            grace_s=opts.grace_s,
            resume_window_s=opts.resume_window_s,
            busy_pause_after=opts.busy_pause_after,
            busy_pause_s=opts.busy_pause_s,
            limiter=LimiterConfig(orphan_hold_s=opts.orphan_hold_s),
        )
        worker = Worker(queue, solver, config, events=events)
        install_worker_signals(asyncio.get_running_loop(), worker.stop)
        await worker.run()
        await queue.aclose()
    except ConfigError:
        raise
    finally:
        if refresher is not None:
            refresher.cancel()
        if metrics_server is not None:
            metrics_server.close()
        await solver.aclose()
        await client.aclose()
    return 0

"""``captcha-queue worker``: run (and with ``--processes P``, supervise) worker processes.

Every option is generated from ``WorkerSettings`` (worker/config.py), where it is declared once; the
command parses them, resolves the connection like every command does (root options, then the
environment) and calls ``run_worker``, or the supervisor for P > 1.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from ..options import build, to_argv
from ..worker.config import WorkerSettings
from ..worker.process import EXIT_STARTUP_FAILED, StartupFailed, reach_redis, run_loop, run_worker
from .app import cli, get_settings
from .config import ENV_CAPTCHAAI_KEY, ENV_CAPTCHAAI_URL, ENV_REDIS_URL, Settings
from .options import settings_options

__all__ = ["EXIT_STARTUP_FAILED", "worker_cmd"]

#: Read by ``Settings.load`` like every command's connection (a root option wins over the environment).
_CONNECTION = ("namespace", "redis_url", "solver_url")


@cli.command("worker")
@settings_options(WorkerSettings, elsewhere=_CONNECTION)
@click.option("--supervised", is_flag=True, hidden=True, help="Set by --processes P on its children.")
def worker_cmd(supervised: bool, **values: Any) -> None:
    """Run worker processes: claim tasks, solve them, write the results.

    The API key comes from CAPTCHAAI_KEY (or the root --captchaai-key-file); it is never logged.
    With --accounts, each registered account's key comes from its own reference (env var or file).
    """
    base = get_settings()
    connection = Settings.load(
        redis_url=values.pop("redis_url") or base.redis_url,
        namespace=values.pop("namespace") or base.namespace,
        captchaai_url=values.pop("solver_url") or base.captchaai_url,
        captchaai_key=base.captchaai_key,
    )
    settings = build(
        WorkerSettings,
        values,
        processes=values["processes"] or (os.cpu_count() or 1),
        redis_url=connection.redis_url,
        namespace=connection.namespace,
        solver_url=connection.captchaai_url,
        api_key=connection.captchaai_key,
    )
    if settings.solver != "instant" and settings.accounts is None:
        connection.require_key()
    if settings.processes is not None and settings.processes > 1:
        from ..worker.logs import configure_logging

        secrets = [settings.api_key] if settings.api_key else []
        configure_logging(settings.log_format, getattr(logging, settings.log_level.upper()), secrets=secrets)
        sys.exit(_supervise(settings))
    try:
        code = run_worker(settings)
    except StartupFailed as exc:
        if not supervised:
            raise
        click.echo(f"error: {exc}", err=True)
        code = EXIT_STARTUP_FAILED
    sys.exit(code)


def _child_args(settings: WorkerSettings, index: int) -> list[str]:
    """The arguments of child ``index``: every setting marked ``child`` (never a secret, nor the Redis
    or solver URL: those travel in the environment), one process each, its own metrics port."""
    port = settings.metrics_port
    own_port = port + index if port else port
    return ["--processes", "1", *to_argv(settings, metrics_port=own_port), "--supervised"]


def _supervise(settings: WorkerSettings) -> int:
    from ..worker.supervisor import Supervisor, child_argv

    assert settings.processes is not None
    argvs: Sequence[list[str]] = [child_argv(_child_args(settings, i)) for i in range(settings.processes)]
    supervisor = Supervisor(
        argvs, env=_child_env(settings), grace_s=settings.grace_s, give_up_code=EXIT_STARTUP_FAILED
    )

    async def supervise() -> int:
        # Redis unreachable: fail here, once, as one process would, before any child starts.
        await reach_redis(settings.redis_url, settings.startup_timeout_s)
        return await supervisor.run()

    return run_loop(supervise())


def _child_env(settings: WorkerSettings) -> dict[str, str]:
    """The children's environment. The Redis URL (its password), the solver URL and the API key
    travel here, never on a command line, where any local user could read them (``ps``)."""
    env = dict(os.environ)
    env[ENV_REDIS_URL] = settings.redis_url
    env[ENV_CAPTCHAAI_URL] = settings.solver_url
    if settings.api_key:
        env[ENV_CAPTCHAAI_KEY] = settings.api_key
    return env

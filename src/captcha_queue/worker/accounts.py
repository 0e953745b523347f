"""Accounts on the worker's side: resolve a registered account's key where the worker runs, build its
solver, and feed per-account metrics.

The registry (``queue/_accounts.py``) keeps a reference to each key: ``key_env`` (an environment
variable of the worker) or ``key_file`` + ``key_entry`` (a secrets file of ``entry=key`` lines, ``#``
comments and blank lines ignored). ``resolve_key`` reads it; its errors name the variable or the file
and entry, never a key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..models import AccountSpec, Result
from .metrics import ForwardingEvents

if TYPE_CHECKING:
    from ..queue._producer import AsyncCaptchaQueue
    from ..solvers.base import Solver
    from .config import WorkerConfig
    from .metrics import WorkerMetrics
    from .runtime import Worker

__all__ = ["AccountEvents", "account_workers", "resolve_key", "solver_for_account"]

#: Providers the in.php / res.php client (CaptchaAISolver) speaks for.
_MAX_SECRETS_BYTES = 1 << 20


def resolve_key(spec: AccountSpec, environ: Mapping[str, str] | None = None) -> str:
    """The API key ``spec`` refers to; ConfigError (naming the reference, never a key) if it is not there."""
    env = os.environ if environ is None else environ
    if spec.key_env is not None:
        key = env.get(spec.key_env, "").strip()
        if not key:
            raise ConfigError(f"account {spec.name}: the environment variable {spec.key_env} is not set")
        return key
    path = Path(spec.key_file or "")
    try:
        if path.stat().st_size > _MAX_SECRETS_BYTES:
            raise ConfigError(f"account {spec.name}: the secrets file {path} is larger than 1 MiB")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"account {spec.name}: cannot read the secrets file {path}: {reason}") from None
    for line in text.splitlines():
        entry, sep, value = line.strip().partition("=")
        if sep and not entry.startswith("#") and entry.strip() == spec.key_entry and value.strip():
            return value.strip()
    raise ConfigError(f"account {spec.name}: the secrets file {path} has no entry {spec.key_entry}")


def solver_for_account(spec: AccountSpec, key: str, *, time_scale: float = 1.0, **options: Any) -> Solver:
    """The solver of one registered account (``options`` go to the client: request_timeout_s, ...)."""
    from ..solvers import create_solver

    return create_solver(
        spec.provider,
        api_key=key,
        base_url=spec.base_url,
        account=spec.name,
        time_scale=time_scale,
        thread_limit=spec.limit,
        **options,
    )


def account_workers(
    queue: AsyncCaptchaQueue,
    specs: Sequence[AccountSpec],
    config: WorkerConfig,
    *,
    keys: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    metrics: WorkerMetrics | None = None,
    **solver_options: Any,
) -> list[tuple[AccountSpec, Worker]]:
    """One ``Worker`` per account, for ``MultiWorker``: its solver (the key from ``keys`` by account
    name, else resolved from its reference), ``config`` with the account's fleet limit, and with
    ``metrics`` its per-account events. The caller closes the solvers (``worker.solver``)."""
    from .runtime import Worker

    built: list[tuple[AccountSpec, Worker]] = []
    for spec in specs:
        key = keys[spec.name] if keys is not None and spec.name in keys else resolve_key(spec, environ)
        solver = solver_for_account(spec, key, time_scale=config.time_scale, **solver_options)
        events = AccountEvents(metrics, spec.name) if metrics is not None else None
        built.append(
            (spec, Worker(queue, solver, dataclasses.replace(config, solver_limit=spec.limit), events=events))
        )
    return built


class AccountEvents(ForwardingEvents):
    """One account's worker events: the process's series as before, plus the per-account ones
    (``captcha_queue_account_*{account=...}``) that ``WorkerMetrics.account_series`` keeps."""

    def __init__(self, metrics: WorkerMetrics, account: str) -> None:
        super().__init__(metrics)
        self.account = account
        metrics.account_series(account)

    def task_finished(self, result: Result) -> None:
        self._m.task_finished(result)
        self._m.account_finished(self.account, result.status)

    def set_in_flight(self, n: int) -> None:
        self._m.account_in_flight(self.account, n)

    def set_slots(self, used: int, limit: int | None) -> None:
        self._m.account_slots(self.account, used, limit)

    def set_account_paused(self, paused: bool) -> None:
        self._m.account_pause_state(self.account, paused)

    def set_limit_unknown(self, unknown: bool) -> None:
        self._m.account_limit_unknown(self.account, unknown)

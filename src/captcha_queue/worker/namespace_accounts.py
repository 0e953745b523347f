"""One worker process serving several namespaces, each with its registered accounts
(``captcha-queue worker --namespaces a:3,b:1 --accounts all``): the parts; ``process.py`` assembles them.

Each namespace runs a ``MultiWorker`` (multi.py) over the accounts registered in it (of those
``--accounts`` names), with its weighted share of ``--concurrency``. An account is one solver account
however many namespaces register it, and each namespace keeps its slots under its own hash tag, so
an account registered in several namespaces has its fleet limit split between them by weight
(``weighted_shares``, as ``--namespaces`` splits ``--solver-limit``): the shares sum to its limit, so
the account never has more solves in flight than that, as long as every process serving these
namespaces gives the same weights. An account whose threads come from the provider (no ``limit``)
is split the same way once they are read.

An account name must mean the same account in every namespace that registers it: the same provider,
URL, limit and key reference; otherwise the process refuses to start (``ConfigError``). Routing
(priority, cost, methods) may differ per namespace.

Metrics: the process's series are sums over namespaces and accounts; ``captcha_queue_account_*`` sum
each account over namespaces and ``captcha_queue_namespace_*`` each namespace over accounts. An
account counts as paused (``captcha_queue_account_paused``) when it is paused in every namespace it
serves, and its limit as known when one namespace knows it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from ..errors import ConfigError
from ..models import AccountSpec, Result
from .metrics import STATUSES, ForwardingEvents
from .namespaces import NamespaceSeries, weighted_shares

if TYPE_CHECKING:
    from .metrics import WorkerMetrics

__all__ = ["AccountShare", "MixedEvents", "MixedState", "share_accounts"]

_V = TypeVar("_V")

#: What makes two registrations the same solver account (routing fields may differ per namespace).
_IDENTITY = ("provider", "base_url", "limit", "key_env", "key_file", "key_entry")


@dataclasses.dataclass(frozen=True)
class AccountShare:
    """One account as one namespace serves it: its registration, this namespace's part of its fleet
    limit (``limit``; None: the threads the account reports, split by ``of_threads``)."""

    spec: AccountSpec
    limit: int | None
    of_threads: Callable[[int], int | None] | None


def share_accounts(
    registered: Mapping[str, Sequence[AccountSpec]],
    weights: Mapping[str, int],
    wanted: Sequence[str] | None = None,
) -> dict[str, list[AccountShare]]:
    """Each namespace's accounts (``registered``: by namespace, in routing order; ``wanted``: the names
    ``--accounts`` lists, None: all) with their shares of the fleet limit. ConfigError when a wanted
    name is registered nowhere, a namespace has no account to serve, an account is registered
    differently in two namespaces, or its limit is smaller than the namespaces sharing it."""
    serve = {
        ns: [spec for spec in specs if wanted is None or spec.name in wanted]
        for ns, specs in registered.items()
    }
    if wanted is not None:
        nowhere = sorted(set(wanted) - {spec.name for specs in serve.values() for spec in specs})
        if nowhere:
            raise ConfigError(
                f"no registered account {', '.join(nowhere)} in namespaces {', '.join(registered)} "
                "(captcha-queue accounts list)"
            )
    empty = [ns for ns, specs in serve.items() if not specs]
    if empty:
        raise ConfigError(
            f"namespace {empty[0]} has no account to serve "
            f"(captcha-queue --namespace {empty[0]} accounts add ...)"
        )
    where: dict[str, list[tuple[str, AccountSpec]]] = {}
    for ns, specs in serve.items():
        for spec in specs:
            where.setdefault(spec.name, []).append((ns, spec))
    for name, regs in where.items():
        first_ns, first = regs[0]
        for ns, spec in regs[1:]:
            differs = [f for f in _IDENTITY if getattr(spec, f) != getattr(first, f)]
            if differs:
                raise ConfigError(
                    f"account {name} is registered differently in namespaces {first_ns} and {ns} "
                    f"({', '.join(differs)}): one name is one solver account; register it alike or rename one"
                )
        if first.limit is not None and first.limit < len(regs):
            raise ConfigError(
                f"account {name}: its limit {first.limit} cannot be shared by the {len(regs)} namespaces "
                f"that register it ({', '.join(ns for ns, _ in regs)}): one slot each at least"
            )
    plan: dict[str, list[AccountShare]] = {ns: [] for ns in serve}
    for ns, specs in serve.items():
        for spec in specs:
            regs = where[spec.name]
            part = [n for n, _ in regs].index(ns)
            share_weights = [weights[n] for n, _ in regs]
            limit = weighted_shares(spec.limit, share_weights)[part] if spec.limit is not None else None
            plan[ns].append(AccountShare(spec, limit, _of_threads(share_weights, part)))
    return plan


def _of_threads(weights: list[int], part: int) -> Callable[[int], int | None] | None:
    if len(weights) == 1:
        return None

    def share(threads: int) -> int | None:
        return weighted_shares(threads, weights)[part] if threads >= len(weights) else None

    return share


@dataclasses.dataclass
class MixedState:
    """What each (namespace, account) worker last set, to sum by namespace, by account and in all."""

    in_flight: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    slots: dict[tuple[str, str], tuple[int, int | None]] = dataclasses.field(default_factory=dict)
    unknown: dict[tuple[str, str], bool] = dataclasses.field(default_factory=dict)
    paused: dict[tuple[str, str], bool] = dataclasses.field(default_factory=dict)
    namespaces: set[str] = dataclasses.field(default_factory=set)

    def namespace_known(self, namespace: str) -> Callable[[], bool]:
        """Whether one account of ``namespace`` knows its limit (its ``limit:<ns>`` readiness)."""
        return lambda: any(not u for (ns, _), u in self.unknown.items() if ns == namespace)


def _total(limits: list[int | None]) -> int | None:
    return None if any(lim is None for lim in limits) else sum(lim for lim in limits if lim is not None)


class MixedEvents(ForwardingEvents):
    """The worker events of one account in one namespace (see the module docstring for the sums)."""

    def __init__(
        self, metrics: WorkerMetrics, series: NamespaceSeries, namespace: str, account: str, state: MixedState
    ) -> None:
        super().__init__(metrics)
        self._series = series
        self.namespace = namespace
        self.account = account
        self._key = (namespace, account)
        self._state = state
        state.in_flight[self._key] = 0
        state.slots[self._key] = (0, None)
        state.unknown[self._key] = True
        state.paused[self._key] = False
        if namespace not in state.namespaces:
            state.namespaces.add(namespace)
            series.add(namespace)
        metrics.account_series(account)

    def _of(self, values: Mapping[tuple[str, str], _V], *, namespace: bool) -> list[_V]:
        at = 0 if namespace else 1
        return [v for k, v in values.items() if k[at] == self._key[at]]

    def task_finished(self, result: Result) -> None:
        self._m.task_finished(result)
        status = result.status if result.status in STATUSES else "error"
        self._series.finished.labels(self.namespace, status).inc()
        self._m.account_finished(self.account, status)

    def set_in_flight(self, n: int) -> None:
        self._state.in_flight[self._key] = n
        self._series.in_flight.labels(self.namespace).set(
            sum(self._of(self._state.in_flight, namespace=True))
        )
        # The account's sum over namespaces; the process's total follows from the accounts'.
        self._m.account_in_flight(self.account, sum(self._of(self._state.in_flight, namespace=False)))

    def set_slots(self, used: int, limit: int | None) -> None:
        state = self._state.slots
        state[self._key] = (used, limit)
        in_ns = self._of(state, namespace=True)
        self._series.slots_used.labels(self.namespace).set(sum(u for u, _ in in_ns))
        ns_limit = _total([lim for _, lim in in_ns])
        self._series.slots_limit.labels(self.namespace).set(math.nan if ns_limit is None else ns_limit)
        of_account = self._of(state, namespace=False)
        self._m.account_slots(
            self.account, sum(u for u, _ in of_account), _total([lim for _, lim in of_account])
        )
        self._m.set_slots(sum(u for u, _ in state.values()), _total([lim for _, lim in state.values()]))

    def set_account_paused(self, paused: bool) -> None:
        self._state.paused[self._key] = paused
        self._m.account_pause_state(self.account, all(self._of(self._state.paused, namespace=False)))

    def set_limit_unknown(self, unknown: bool) -> None:
        self._state.unknown[self._key] = unknown
        self._m.account_limit_unknown(self.account, all(self._of(self._state.unknown, namespace=False)))

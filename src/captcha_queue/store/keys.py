"""Every Redis key of a namespace, built here and nowhere else.

All keys of a namespace share one hash tag, ``{<namespace>}``, so they live in one Redis Cluster slot
and every Lua script can touch all of them atomically. Scripts receive their keys through ``KEYS``;
no script builds a key name. Per-task data lives in fields of namespace-level hashes (with an expiry
index reaped by the scripts), not in per-task keys, so a script never needs a key it was not given.
"""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass, field

from ..errors import InvalidArgument

__all__ = ["GatewayKeys", "Keys", "validate_account", "validate_account_ref", "validate_namespace"]

_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# No ':' in an account name: "a:limit" would name account a's limit key.
_ACCOUNT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# An account ref: the name, or the name and its key's fingerprint (solvers.base.account_ref).
_ACCOUNT_REF_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}(/[A-Za-z0-9_.-]{1,64})?")


def validate_namespace(namespace: str) -> str:
    """Return ``namespace`` if it is usable inside a hash tag, else raise InvalidArgument."""
    if not isinstance(namespace, str) or not _NAMESPACE_RE.fullmatch(namespace):
        raise InvalidArgument(
            f"namespace {reprlib.repr(namespace)} must be 1-64 characters of "
            "letters, digits, '_', '.', ':', '-'",
            field="namespace",
        )
    return namespace


def validate_account(account: str) -> str:
    """Return ``account`` if it can name a solver account's keys, else raise InvalidArgument."""
    if not isinstance(account, str) or not _ACCOUNT_RE.fullmatch(account):
        raise InvalidArgument(
            f"account {reprlib.repr(account)} must be 1-64 characters of letters, digits, '_', '.', '-'",
            field="account",
        )
    return account


def validate_account_ref(ref: str) -> str:
    """Return ``ref`` if it is an account ref (``<account>`` or ``<account>/<key fingerprint>``)."""
    if not isinstance(ref, str) or not _ACCOUNT_REF_RE.fullmatch(ref):
        raise InvalidArgument(
            f"account ref {reprlib.repr(ref)} must be <account> or <account>/<key fingerprint>",
            field="account",
        )
    return ref


_PER_ACCOUNT = frozenset({"slots", "slot_limit", "slot_owners", "account_paused", "reports", "reports_taken"})


@dataclass(frozen=True)
class Keys:
    """The key names of one namespace."""

    namespace: str
    prefix: str = field(init=False)

    def __post_init__(self) -> None:
        validate_namespace(self.namespace)
        object.__setattr__(self, "prefix", "{" + self.namespace + "}")

    def _k(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    # -- the queue --------------------------------------------------------------------------
    def queue(self, priority: str) -> str:
        """LIST of task ids waiting at one priority, head first."""
        return self._k(f"queue:{priority}")

    @property
    def wake(self) -> str:
        """LIST used only as a wake-up marker for blocked claimers."""
        return self._k("wake")

    @property
    def tasks(self) -> str:
        """HASH id -> task JSON (the immutable part)."""
        return self._k("tasks")

    @property
    def state(self) -> str:
        """HASH id -> task state JSON (status, attempt, lease, remote id, history)."""
        return self._k("state")

    @property
    def active(self) -> str:
        """ZSET id -> lease deadline (ms, Redis server time) of claimed tasks."""
        return self._k("active")

    @property
    def delayed(self) -> str:
        """ZSET id -> time (ms) a retry becomes claimable."""
        return self._k("delayed")

    @property
    def results(self) -> str:
        """HASH id -> final Result JSON."""
        return self._k("results")

    @property
    def expiry(self) -> str:
        """ZSET id -> time (ms) when a finished task's fields are deleted everywhere."""
        return self._k("expiry")

    @property
    def idempotency(self) -> str:
        """HASH idempotency key -> task id."""
        return self._k("idem")

    @property
    def dead(self) -> str:
        """HASH id -> DeadLetter JSON."""
        return self._k("dead")

    @property
    def dead_index(self) -> str:
        """ZSET id -> time (ms) it was dead-lettered."""
        return self._k("dead:index")

    @property
    def counters(self) -> str:
        """HASH of monotonically increasing counters (completed, failed, ...): bounded fields."""
        return self._k("counters")

    @property
    def events(self) -> str:
        """STREAM of final results (capped), for listeners that resume after a disconnect."""
        return self._k("events")

    @property
    def channel(self) -> str:
        """PUB/SUB channel: one message per final result (task id and status)."""
        return self._k("done")

    @property
    def webhooks(self) -> str:
        """HASH task id -> webhook delivery JSON (the outbox of tasks submitted with a pingback)."""
        return self._k("webhooks")

    @property
    def webhooks_due(self) -> str:
        """ZSET task id -> ms of its delivery's next step: the next try, the lease deadline of a
        delivery being sent, or when a delivered or failed record is deleted."""
        return self._k("webhooks:due")

    @property
    def epoch(self) -> str:
        """STRING: a random id written once per data set; a change means Redis lost its data."""
        return self._k("epoch")

    def named(self, name: str, account: str = "default") -> str:
        """A key by the name a script's header gives it (``--- KEYS[i] <name> <TYPE>``): ``queue_high``,
        ``state``, ``idem``, ``slots`` (of ``account``), ..."""
        if name.startswith("queue_"):
            return self.queue(name[len("queue_") :])
        if name in _PER_ACCOUNT:
            key: str = getattr(self, name)(account)
            return key
        if name == "idem":
            return self.idempotency
        value = getattr(self, name, None)
        if name.startswith("_") or not isinstance(value, str) or name in ("namespace", "prefix", "channel"):
            raise InvalidArgument(f"no key is named {name!r}", field="name")
        return value

    @property
    def script_keys(self) -> tuple[str, ...]:
        """Every key of the queue's own layout (what ``captcha-queue doctor`` and the wrong-type
        tests go through); each script receives only the ones its header names (``named``)."""
        return (
            self.queue("high"),
            self.queue("normal"),
            self.queue("low"),
            self.wake,
            self.tasks,
            self.state,
            self.active,
            self.delayed,
            self.results,
            self.expiry,
            self.idempotency,
            self.dead,
            self.dead_index,
            self.counters,
            self.events,
            self.epoch,
            self.paused,
            self.workers,
            self.webhooks,
            self.webhooks_due,
        )

    @property
    def audit(self) -> str:
        """STREAM of operator actions (the dashboard's: who, role, action, target, outcome), capped."""
        return self._k("audit")

    # -- the fleet -----------------------------------------------------------------------------
    @property
    def workers(self) -> str:
        """ZSET worker id -> heartbeat deadline (ms)."""
        return self._k("workers")

    @property
    def worker_info(self) -> str:
        """HASH worker id -> registration JSON (host, pid, started, in flight, version)."""
        return self._k("workers:info")

    @property
    def worker_drains(self) -> str:
        """HASH worker id -> drain request JSON (reason, since_ms): an operator asked that worker to
        drain; it reads the request with its next heartbeat, and its unregistration deletes it."""
        return self._k("workers:drains")

    @property
    def paused(self) -> str:
        """HASH: reason, since, until (ms) while claiming is paused fleet-wide."""
        return self._k("paused")

    def account_paused(self, account: str) -> str:
        """HASH: the pause of one solver account (``account``: its ref, name + key fingerprint), laid out
        as ``paused`` plus who set it; only workers of that account stop."""
        return self._k(f"paused:account:{account}")

    @property
    def paused_accounts(self) -> str:
        """SET of account refs that have had a pause (a timed one may have lapsed since): the index of
        ``account_paused`` keys, for the CLI."""
        return self._k("paused:accounts")

    def slots(self, account: str) -> str:
        """ZSET slot holder -> lease deadline (ms): solver slots in use on one account."""
        return self._k(f"slots:{validate_account(account)}")

    def slot_limit(self, account: str) -> str:
        """HASH: configured, effective (after back-off) limit, and when it last changed."""
        return self._k(f"slots:{validate_account(account)}:limit")

    # -- the gateway (its client keys are in GatewayKeys) ------------------------------------------
    @property
    def gateway_ids(self) -> str:
        """STRING: counter the gateways take blocks of numeric task ids from (INCRBY)."""
        return self._k("gateway:ids")

    def gateway_in_flight(self, key_id: str) -> str:
        """ZSET task id -> submit time (ms): tasks of one gateway client key not yet seen finished
        (its concurrency quota)."""
        return self._k(f"gateway:inflight:{key_id}")

    def slot_owners(self, account: str) -> str:
        """HASH slot holder -> lease token of the claim holding it (fencing for slot release)."""
        return self._k(f"slots:{validate_account(account)}:owners")

    # -- accounts ------------------------------------------------------------------------------
    @property
    def accounts(self) -> str:
        """HASH account name -> AccountSpec JSON: the namespace's solver accounts (no keys: references)."""
        return self._k("accounts")

    # -- refunds -------------------------------------------------------------------------------
    def reports(self, ref: str) -> str:
        """LIST of report requests (a verdict on a solved task's answer) waiting for a worker of the
        account ``ref`` (``<account>/<key fingerprint>``: only that key can report its solves)."""
        return self._k(f"reports:{validate_account_ref(ref)}")

    def reports_taken(self, ref: str) -> str:
        """ZSET report request JSON -> lease deadline (ms): requests a worker took and has not acked."""
        return self._k(f"reports:{validate_account_ref(ref)}:taken")

    @property
    def report_refs(self) -> str:
        """SET of the account refs report requests were queued for (reportTask adds, purgeReports
        removes a ref whose lists are empty): how ``report_backlog`` finds them without SCAN."""
        return self._k("report_refs")


@dataclass(frozen=True)
class GatewayKeys:
    """The gateway's own keys, outside every namespace: a client key names its namespace."""

    prefix: str = "{captcha-queue:gateway}"

    @property
    def clients(self) -> str:
        """HASH sha256 hex of a client key -> its record JSON (namespace, priority, limits); the key
        itself is never stored."""
        return f"{self.prefix}:clients"

    def rate(self, key_id: str, window: int) -> str:
        """STRING: requests of one client key in one rate window (expires after the window)."""
        return f"{self.prefix}:rate:{key_id}:{window}"

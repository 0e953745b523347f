"""The accounts registry: the solver accounts of a namespace, kept in Redis (``keys.accounts``).

Each entry is an ``AccountSpec``: name, provider, base URL, fleet limit, priority and cost for routing,
the methods it serves, and a *reference* to its API key (an environment variable's name, or a secrets
file and an entry in it), never the key itself: Redis, its dumps and its replicas hold no secret.
Every field is validated before anything is written (``check_account``); workers started with
``--accounts`` read the registry (``worker/accounts.py``) and resolve each key where they run.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import re
import reprlib
import time
from urllib.parse import urlsplit

import msgspec

from ..errors import InvalidArgument
from ..models import AccountSpec, AccountStats, ReportBacklog, ReportRequest, WorkerEntry
from ..protocol.methods import KNOWN_METHODS
from ..solvers.base import account_ref
from ..solvers.profiles import PROFILES, PROVIDER_NAMES
from ..store.connection import redis_errors_async
from ..store.keys import validate_account, validate_account_ref
from ._admin import AdminAPI
from ._core import as_str, log

__all__ = ["ACCOUNT_PROVIDERS", "THREADS_PROVIDERS", "AccountsAPI", "balances_of", "check_account"]

#: Providers an account may name: the provider profiles (solvers/profiles.py builds a client for each).
ACCOUNT_PROVIDERS: tuple[str, ...] = tuple(sorted(PROVIDER_NAMES))
#: Providers whose accounts report their thread limit (threadsinfo): the others need ``limit``.
THREADS_PROVIDERS: frozenset[str] = frozenset(
    name for name, profile in PROFILES.items() if not profile.requires_limit
)
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_ENTRY_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# What an API key looks like (32+ hex digits, or long runs of letters and digits): refused as a
# reference, so a key pasted in the wrong place is never stored.
_KEY_LIKE_RE = re.compile(r"[0-9a-fA-F]{24,}|[A-Za-z0-9_-]*\d[A-Za-z0-9_-]*[a-z][A-Za-z0-9_-]{30,}")
_MAX_PRIORITY = 1_000_000
_MAX_COST = 1e9

_decoder = msgspec.json.Decoder(AccountSpec)
_encoder = msgspec.json.Encoder()
_request_decoder = msgspec.json.Decoder(ReportRequest)
#: Requests of one list looked at per purgeReports call.
_PURGE_BATCH = 1000


def _bad(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, field=field)


def _check_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        _port = parts.port  # ValueError for a port out of range
    except ValueError as exc:
        raise _bad("base_url", f"base URL {reprlib.repr(url)} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad("base_url", f"base URL {reprlib.repr(url)} must be http(s)://host[:port][/path]")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise _bad(
            "base_url",
            "the base URL may not carry credentials, a query or a fragment (keys go in a reference)",
        )
    if parts.scheme == "http":
        try:
            loopback = ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = parts.hostname == "localhost"
        if not loopback:
            raise _bad(
                "base_url", "plain http is for loopback only: the API key would travel in clear; use https"
            )
    return url.rstrip("/")


def _check_types(spec: AccountSpec) -> None:
    """Every field of the type it is declared with (a Struct does not check on construction)."""
    try:
        msgspec.convert(msgspec.structs.asdict(spec), type=AccountSpec, strict=True)
    except msgspec.ValidationError as exc:
        found = re.search(r"`\$\.(\w+)", str(exc))
        field = found.group(1) if found else "spec"
        raise _bad(field, f"account field {field}: {str(exc).split(' - at ')[0]}") from None


def check_account(spec: AccountSpec) -> AccountSpec:
    """``spec`` with its base URL normalised, or InvalidArgument naming the first bad field."""
    _check_types(spec)
    validate_account(spec.name)
    if spec.provider not in ACCOUNT_PROVIDERS:
        raise _bad("provider", f"unknown provider {spec.provider!r}; known: {', '.join(ACCOUNT_PROVIDERS)}")
    base_url = None if spec.base_url is None else _check_url(spec.base_url)
    if spec.provider == "generic-inphp" and base_url is None:
        raise _bad("base_url", "a generic in.php account needs its base URL")
    if spec.limit is not None and (isinstance(spec.limit, bool) or not 1 <= spec.limit <= 1_000_000):
        raise _bad("limit", f"limit must be 1-1000000 solves in flight, got {spec.limit!r}")
    if spec.limit is None and spec.provider not in THREADS_PROVIDERS:
        raise _bad(
            "limit", f"a {spec.provider} account reports no thread limit: give its limit (solves in flight)"
        )
    if isinstance(spec.priority, bool) or not -_MAX_PRIORITY <= spec.priority <= _MAX_PRIORITY:
        raise _bad("priority", f"priority must be an integer within +-{_MAX_PRIORITY}")
    if isinstance(spec.cost, bool) or not math.isfinite(spec.cost) or not 0 <= spec.cost <= _MAX_COST:
        raise _bad("cost", f"cost must be a finite number from 0 to {_MAX_COST:g}, got {spec.cost!r}")
    by_env, by_file = spec.key_env is not None, spec.key_file is not None or spec.key_entry is not None
    if by_env == by_file:
        raise _bad("key", "give the key's reference: an environment variable, or a secrets file and entry")
    if spec.key_env is not None:
        if not _ENV_RE.fullmatch(spec.key_env):
            raise _bad("key_env", "key_env must be an environment variable's name (letters, digits, '_')")
        if _KEY_LIKE_RE.search(spec.key_env):
            raise _bad(
                "key_env", "key_env looks like an API key: give the name of the variable that holds it"
            )
    else:
        if not spec.key_file or not spec.key_entry:
            raise _bad("key_file", "a secrets file reference needs both the file and the entry")
        if len(spec.key_file) > 1024 or "\n" in spec.key_file or "\0" in spec.key_file:
            raise _bad("key_file", "key_file must be a path")
        if not _ENTRY_RE.fullmatch(spec.key_entry):
            raise _bad("key_entry", "key_entry must be 1-128 letters, digits, '_', '.', ':', '-'")
        if _KEY_LIKE_RE.search(spec.key_entry):
            raise _bad("key_entry", "the reference looks like an API key: give where the key is, not the key")
    unknown = [m for m in spec.methods if m not in KNOWN_METHODS]
    if unknown:
        raise _bad("methods", f"unknown method {unknown[0]!r}; known methods: {', '.join(KNOWN_METHODS)}")
    return msgspec.structs.replace(spec, base_url=base_url, methods=tuple(dict.fromkeys(spec.methods)))


class AccountsAPI(AdminAPI):
    """The registry's reads and writes, and per-account stats (mixed into AsyncCaptchaQueue)."""

    async def add_account(self, spec: AccountSpec, *, replace: bool = False) -> AccountSpec:
        """Register ``spec`` (validated first: a bad field writes nothing). An account of that name
        is an error unless ``replace``. Returns the account as stored."""
        if not isinstance(spec, AccountSpec):
            raise InvalidArgument("add_account takes an AccountSpec", field="spec")
        spec = check_account(spec)
        async with redis_errors_async(self.client):
            if replace:
                await self.client.hset(self.keys.accounts, spec.name, _encoder.encode(spec))
            elif not await self.client.hsetnx(self.keys.accounts, spec.name, _encoder.encode(spec)):
                raise InvalidArgument(
                    f"account {spec.name} exists already (remove it first, or replace it)", field="name"
                )
        return spec

    async def remove_account(self, name: str) -> bool:
        """Remove an account from the registry; False when there was none of that name."""
        validate_account(name)
        async with redis_errors_async(self.client):
            return bool(await self.client.hdel(self.keys.accounts, name))

    async def accounts(self) -> list[AccountSpec]:
        """The registered accounts in routing order: priority (high first), cost (low first), name.
        An entry that cannot be read (written by hand) is logged and left out."""
        async with redis_errors_async(self.client):
            raw = await self.client.hgetall(self.keys.accounts)
        found: list[AccountSpec] = []
        for name, blob in raw.items():
            try:
                found.append(check_account(_decoder.decode(blob)))
            except (ValueError, RecursionError) as exc:
                log.warning("account entry %r unreadable, skipped: %s", name, exc)
        return sorted(found, key=routing_order)

    async def account_stats(self) -> list[AccountStats]:
        """Every registered account now, in routing order: slots in use and their limit, its pause
        (any key of the account), live workers serving it and the tasks they hold."""
        specs = await self.accounts()
        if not specs:
            return []
        pauses = await self.pause_state()
        workers = await self.workers()
        found: list[AccountStats] = []
        balances = balances_of(workers)
        for spec in specs:
            stats = await self.stats(spec.name)
            pause = next((p for p in pauses.accounts if p.account == spec.name), None)
            serving = [w for w in workers if w.info.get("account") == spec.name]
            balance = balances.get(spec.name)
            found.append(
                AccountStats(
                    name=spec.name,
                    provider=spec.provider,
                    slots_used=stats.solver_slots_used,
                    slots_limit=stats.solver_slots_limit,
                    paused=pause.reason if pause is not None else None,
                    pause_code=pause.code if pause is not None else None,
                    workers=len(serving),
                    in_flight=sum(int(w.info.get("in_flight") or 0) for w in serving),
                    balance=balance[0] if balance is not None else None,
                    balance_at=balance[1] if balance is not None else None,
                )
            )
        return found

    async def account_balances(self) -> dict[str, tuple[float, float]]:
        """Account name -> (balance, unix time it was read) as live workers last reported it (each
        worker asks its account at start, in breaker probes and every ``balance_refresh_s``; the most
        recent report of an account wins). Accounts no live worker serves, or whose workers have not
        learnt a balance, are absent. What the gateway's ``getbalance`` answers."""
        return balances_of(await self.workers())

    # -- report requests nobody sends -------------------------------------------------------------
    async def report_backlog(self) -> list[ReportBacklog]:
        """Every account ref with report requests waiting or taken (not acked), oldest first, with the
        live workers serving that ref. A ref no worker serves (its account removed, its key rotated:
        the ref names the key) keeps its requests until ``purge_reports`` or a worker's expiry sweep
        (``report_expire_s``) drops them. The refs come from ``keys.report_refs`` (no SCAN: the
        workers' ACL denies it)."""
        refs = await self._report_refs()
        if not refs:
            return []
        serving: dict[str, int] = {}
        for worker in await self.workers():
            name, key = worker.info.get("account"), worker.info.get("key")
            if isinstance(name, str):
                ref = account_ref(name, key if isinstance(key, str) else None)
                serving[ref] = serving.get(ref, 0) + 1
        found = []
        for ref in sorted(refs):
            async with redis_errors_async(self.client), self.client.pipeline(transaction=False) as pipe:
                pipe.llen(self.keys.reports(ref))
                pipe.lindex(self.keys.reports(ref), 0)
                pipe.zrange(self.keys.reports_taken(ref), 0, -1)
                waiting, head, taken = await pipe.execute()
            times = [_requested_at(raw) for raw in [head, *taken] if raw is not None]
            known = [t for t in times if t is not None]
            if not waiting and not taken:
                continue
            found.append(
                ReportBacklog(
                    account=ref,
                    waiting=int(waiting),
                    taken=len(taken),
                    oldest_at=min(known) if known else None,
                    workers=serving.get(ref, 0),
                )
            )
        return sorted(found, key=lambda b: (b.oldest_at is None, b.oldest_at or 0.0, b.account))

    async def _report_refs(self) -> set[str]:
        async with redis_errors_async(self.client):
            members = await self.client.smembers(self.keys.report_refs)
        refs: set[str] = set()
        for raw in members:
            with contextlib.suppress(InvalidArgument):
                refs.add(validate_account_ref(as_str(raw)))
        return refs

    async def purge_reports(self, account: str, *, older_than_s: float = 0.0) -> list[ReportRequest]:
        """Drop the report requests of the account ref ``account`` made more than ``older_than_s``
        ago (0: all of them), waiting and taken alike; returns those dropped (unreadable ones are
        dropped and not returned). They are never sent: the task keeps its "reported" mark."""
        validate_account_ref(account)
        if (
            isinstance(older_than_s, bool)
            or not isinstance(older_than_s, int | float)
            or not math.isfinite(older_than_s)
            or older_than_s < 0
        ):
            raise InvalidArgument(
                f"older_than_s must be a finite number >= 0, got {older_than_s!r}", field="older_than_s"
            )
        cutoff = time.time() - older_than_s
        keys = (self.keys.reports(account), self.keys.reports_taken(account), self.keys.report_refs)
        dropped: list[ReportRequest] = []
        while True:
            reply = await self._script("purgeReports", repr(cutoff), _PURGE_BATCH, account, keys=keys)
            self._check(reply, "-")
            for raw in reply[1:]:
                try:
                    dropped.append(_request_decoder.decode(raw))
                except (ValueError, RecursionError):
                    log.warning("unreadable report request of %s dropped", account)
            if len(reply) - 1 < _PURGE_BATCH:
                return dropped

    async def expire_reports(self, max_age_s: float) -> list[ReportRequest]:
        """``purge_reports(ref, older_than_s=max_age_s)`` for every ref whose oldest request is older,
        and every ref with none left (it leaves the index): the workers' sweep (``report_expire_s``)."""
        cutoff = time.time() - max_age_s
        oldest = {b.account: b.oldest_at for b in await self.report_backlog()}
        dropped: list[ReportRequest] = []
        for ref in await self._report_refs():
            # A ref with nothing left is purged too: that takes it out of the index.
            at = oldest.get(ref, 0.0)
            if at is None or at < cutoff:
                dropped += await self.purge_reports(ref, older_than_s=max_age_s)
        return dropped

    async def account(self, name: str) -> AccountSpec | None:
        """One registered account, or None."""
        validate_account(name)
        async with redis_errors_async(self.client):
            blob = await self.client.hget(self.keys.accounts, name)
        return None if blob is None else check_account(_decoder.decode(blob))


def _requested_at(raw: bytes | str) -> float | None:
    try:
        return _request_decoder.decode(raw).requested_at
    except (ValueError, RecursionError):
        return None


def balances_of(workers: list[WorkerEntry]) -> dict[str, tuple[float, float]]:
    """The most recent (balance, at) per account among ``workers``' registrations (entries that are
    not numbers, written by hand or by another version, are left out)."""
    found: dict[str, tuple[float, float]] = {}
    for worker in workers:
        info = worker.info
        account = info.get("account")
        balance, at = _number(info.get("balance")), _number(info.get("balance_at"))
        if not isinstance(account, str) or balance is None or at is None:
            continue
        if account not in found or at > found[account][1]:
            found[account] = (balance, at)
    return found


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def routing_order(spec: AccountSpec) -> tuple[int, float, str]:
    """The order accounts are tried in: priority (high first), cost (low first), name."""
    return (-spec.priority, spec.cost, spec.name)

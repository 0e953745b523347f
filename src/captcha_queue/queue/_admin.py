"""Inspection and operations: stats, the dead-letter queue, the data-set epoch, and the fleet state.

The fleet state (``docs/design.md``, "Fleet keys") is read and written here and nowhere else: the
pauses (the namespace's and each solver account's), the worker registrations and their drain
requests, and Redis server time.
The CLI, the worker's breaker and registry go through these methods; pauses are written and lifted
only by the scripts in ``store/lua/fleet/``.
"""

from __future__ import annotations

import math
import re
import reprlib
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
from redis.exceptions import ResponseError

from ..errors import InvalidArgument
from ..models import (
    PRIORITIES,
    Attempt,
    AuditEntry,
    DataLoss,
    DeadLetter,
    Pause,
    PauseState,
    Result,
    SlotUsage,
    Stats,
    Task,
    TaskRecord,
    WorkerDrain,
    WorkerEntry,
)
from ..store.connection import redis_errors_async
from ..store.scripts import Code
from ._core import QueueCore, as_str, check_seconds, check_task_id, decode_lenient, decode_result, log
from ._submission import MAX_ATTEMPTS_LIMIT, state_open

__all__ = ["AUDIT_MAXLEN", "FORGET_WORKER_AFTER_S", "OPERATOR_CODE", "RECENT_MAX", "AdminAPI", "parse_pause"]

#: The ``code`` of an operator's pause: only ``resume`` lifts it (an account probe never does).
OPERATOR_CODE = "OPERATOR"
#: Registrations that lapsed this long ago are deleted (dead workers stay visible for a while).
FORGET_WORKER_AFTER_S = 3600.0

#: An account as pauses name it (``name/key fingerprint``), or what ``resume(account=...)`` matches.
_REF_RE = re.compile(r"[A-Za-z0-9_.:/-]{1,160}")
_CODE_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_REASON_MAX = 500
_WORKER_ID_MAX = 200

#: The most results one ``recent_results`` call reads (one XREVRANGE).
RECENT_MAX = 10_000
#: Approximate cap of the audit stream (oldest actions are trimmed first).
AUDIT_MAXLEN = 10_000
_AUDIT_FIELD_MAX = 500
_IDEM_KEY_MAX = 256
_TASK_ID_MAX = 200

_COUNTERS = ("completed", "failed", "dead", "cancelled", "expired", "submitted")
_encoder = msgspec.json.Encoder()


def _int(value: Any) -> int:
    """A counter as stored; one someone overwrote with something else reads as 0 (the scripts that
    count refuse to run until it is repaired: see lua/includes/util.lua)."""
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _ms(value: str | None) -> int | None:
    """A stored time in ms; unreadable (NaN, inf, text) reads as None, as the claim script reads it."""
    try:
        return int(float(value)) if value else None
    except (ValueError, OverflowError):
        return None


def parse_pause(raw: Mapping[Any, Any], ref: str | None = None) -> Pause | None:
    """A pause hash as stored (HGETALL), or None when there is none: the one parser of pauses.

    Any field makes a pause, as the claim script counts one (the hash exists); an unreadable
    ``until_ms`` means open-ended, as it reads it too. ``Pause.active`` says whether it is in force.
    """
    if not raw:
        return None
    fields = {as_str(k): as_str(v) for k, v in raw.items()}
    return Pause(
        reason=fields.get("reason", ""),
        code=fields.get("code") or None,
        since_ms=_ms(fields.get("since_ms")),
        until_ms=_ms(fields.get("until_ms")),
        ref=ref,
        worker=fields.get("worker") or None,
        account=fields.get("account") or None,
        key=fields.get("key") or None,
    )


def _check_name(name: str, value: object, pattern: re.Pattern[str], allowed: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidArgument(f"{name} {reprlib.repr(value)} must be {allowed}", field=name)
    return value


def _check_text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidArgument(f"{name} {reprlib.repr(value)} must be 1-{limit} characters", field=name)
    return value


def _check_ref(name: str, value: object) -> str:
    return _check_name(name, value, _REF_RE, "1-160 letters, digits, '_', '.', ':', '/', '-'")


def _limit(value: Any) -> int | None:
    """The solver slot limit as stored, or None when absent or not a finite number."""
    try:
        limit = float(as_str(value)) if value is not None else math.nan
    except ValueError:
        return None
    return int(limit) if math.isfinite(limit) else None


class AdminAPI(QueueCore):
    """Stats and dead-letter operations (mixed into AsyncCaptchaQueue)."""

    #: (epoch, submitted watermark, finished) at the last check_data_loss call.
    _data_seen: tuple[str | None, int, int] | None = None
    #: (epoch, submitted counter) after this object's latest acknowledged submission since that call.
    _acknowledged: tuple[str, int] | None = None

    def _note_acknowledged(self, epoch: str, submitted: int) -> None:
        """Keep the watermark of an acknowledged submission: a failover that loses it takes the
        counter back below it, which the next check_data_loss reports even if the submission came
        after the previous check (as a second primary's writes do in a split brain)."""
        known = self._acknowledged
        if known is None or known[0] != epoch or submitted > known[1]:
            self._acknowledged = (epoch, submitted)

    async def stats(self, account: str = "default") -> Stats:
        """A snapshot of the namespace in one round trip (``account``: whose solver slots to count).

        ``paused`` is the reason of the namespace's pause in force, read and parsed as ``pause_state``
        reads it (``"paused"`` when it gives none), or None."""
        script = self.scripts.readStats
        keys = [self.keys.named(k, account) for k in script.key_names]
        async with redis_errors_async(self.client):
            async with self.client.pipeline(transaction=False) as pipe:
                script.queue_in(pipe, keys, self._conf_args)
                self._queue_fleet_pause(pipe)
                reply, *pause_replies = await pipe.execute(raise_on_error=False)
            for failed in pause_replies:
                if isinstance(failed, Exception):
                    raise failed
        if isinstance(reply, ResponseError):
            # NOSCRIPT (Redis restarted): the call alone loads the script; any other error it raises as ours.
            reply = await self._script("readStats", keys=keys)
        _, fleet = _fleet_pause(*pause_replies)
        counters = dict(
            zip(_COUNTERS, (list(reply[5]) + [None] * len(_COUNTERS))[: len(_COUNTERS)], strict=True)
        )
        oldest_ms = int(reply[7])
        return Stats(
            queued={priority: int(reply[i]) for i, priority in enumerate(PRIORITIES)},
            delayed=int(reply[3]),
            in_flight=int(reply[4]),
            completed=_int(counters["completed"]),
            failed=_int(counters["failed"]),
            dead=_int(counters["dead"]),
            cancelled=_int(counters["cancelled"]),
            expired=_int(counters["expired"]),
            workers=int(reply[6]),
            oldest_queued_age_s=oldest_ms / 1000 if oldest_ms >= 0 else None,
            paused=(fleet.reason or "paused") if fleet is not None else None,
            solver_slots_used=int(reply[8]),
            solver_slots_limit=_limit(reply[9]),
            submitted=_int(counters["submitted"]),
            dead_letters=int(reply[10]),
            epoch=as_str(reply[11]) if reply[11] is not None else None,
        )

    async def check_data_loss(self) -> DataLoss | None:
        """Compare the data set with the one this object saw at its previous call (one round trip).

        Returns a DataLoss when the epoch changed or vanished since: Redis restarted empty, was
        flushed or failed over to an empty replica; or when, under the same epoch, the submitted or
        finished watermark went back (a failover to a replica that lacked the latest writes). The
        first call only records what it sees. Workers call this every renew period and log the loss
        at CRITICAL; producers may too. This object's acknowledged submissions count as seen: each
        answers the data set's submitted counter, so a rollback that loses one is reported even when
        it came after the previous call (or before the first).
        """
        stats = await self.stats()
        finished = stats.completed + stats.failed + stats.cancelled + stats.expired
        previous, acknowledged = self._data_seen, self._acknowledged
        if acknowledged is not None:
            # An acknowledged submission since: its watermark joins the one seen under its epoch (a
            # different epoch at the previous call is itself the loss to report, so that one stands).
            if previous is None or previous[0] is None:
                previous = (acknowledged[0], acknowledged[1], 0)
            elif previous[0] == acknowledged[0]:
                previous = (previous[0], max(previous[1], acknowledged[1]), previous[2])
        self._data_seen = (stats.epoch, stats.submitted, finished)
        self._acknowledged = None
        if previous is None or previous[0] is None:
            return None
        if previous[0] == stats.epoch:
            if stats.submitted >= previous[1] and finished >= previous[2]:
                return None
            return DataLoss(
                epoch_before=previous[0],
                epoch_after=stats.epoch,
                submitted_before=previous[1],
                finished_before=previous[2],
                submitted_after=stats.submitted,
                finished_after=finished,
            )
        return DataLoss(
            epoch_before=previous[0],
            epoch_after=stats.epoch,
            submitted_before=previous[1],
            finished_before=previous[2],
        )

    async def epoch(self) -> str:
        """The random id of this Redis data set, written on first use. A different answer later
        means Redis lost its data (restarted empty); compare ``Stats.submitted`` to count the loss."""
        candidate = uuid.uuid4().hex
        async with redis_errors_async(self.client):
            previous = await self.client.set(self.keys.epoch, candidate, nx=True, get=True)
        return as_str(previous) if previous is not None else candidate

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters first, up to ``limit``."""
        if limit < 1:
            return []
        async with redis_errors_async(self.client):
            ids: Any = await self.client.zrevrange(self.keys.dead_index, 0, limit - 1)
            if not ids:
                return []
            raws = await self.client.hmget(self.keys.dead, ids)
        letters = []
        for raw_id, raw in zip(ids, raws, strict=True):
            letter = self._decode_dead(raw, as_str(raw_id))
            if letter is not None:
                letters.append(letter)
        return letters

    async def dead_letter(self, task_id: str) -> DeadLetter | None:
        """One dead letter, or None."""
        check_task_id(task_id)
        async with redis_errors_async(self.client):
            raw = await self.client.hget(self.keys.dead, task_id)
        return self._decode_dead(raw, task_id)

    async def requeue(self, task_id: str) -> bool:
        """Give a dead-lettered task a new run under the same id (fresh attempts, no deadline, tail of
        its priority). False when there is no such dead letter or its task cannot be read."""
        letter = await self.dead_letter(task_id)
        if letter is None:
            return False
        task = letter.task
        if task is None and letter.raw is not None:
            try:
                task = msgspec.json.decode(letter.raw, type=Task)
            except ValueError:
                task = None
        if task is None or task.id != task_id or not 1 <= task.max_attempts <= MAX_ATTEMPTS_LIMIT:
            log.warning("dead letter %s has no readable task: not requeued", task_id)
            return False
        # An operator's requeue starts over: the old deadline would expire it at once.
        task = msgspec.structs.replace(task, expires_at=None)
        metadata_json = _encoder.encode(task.metadata) if task.metadata is not None else None
        reply = await self._script(
            "requeueDead",
            task_id,
            _encoder.encode(task),
            state_open(task, metadata_json),
            task.priority,
            task.idempotency_key or "",
        )
        if int(reply[0]) == Code.NOT_FOUND:
            return False
        self._check(reply, task_id)
        return True

    async def requeue_all(self) -> int:
        """Requeue every dead letter; returns how many were requeued."""
        requeued = 0
        skipped: set[str] = set()
        while True:
            async with redis_errors_async(self.client):
                ids = await self.client.zrange(self.keys.dead_index, 0, 99 + len(skipped))
            batch = [as_str(i) for i in ids if as_str(i) not in skipped]
            if not batch:
                return requeued
            for task_id in batch:
                if await self.requeue(task_id):
                    requeued += 1
                else:
                    skipped.add(task_id)

    async def purge_dead(self) -> int:
        """Delete every dead letter; returns how many there were."""
        reply = await self._script("purgeDead")
        self._check(reply, "-")
        return int(reply[1])

    # -- reads for dashboards: recent results, one task, slots, the audit trail -----------------

    async def recent_results(self, since_s: float = 3600.0, limit: int = 1000) -> list[tuple[str, Result]]:
        """The final results written in the last ``since_s`` seconds (Redis time), newest first, at
        most ``limit`` (1-RECENT_MAX), each with its events stream id (ms-seq: when it was written).
        The stream is capped (``QueueConfig.events_maxlen``): older results may be gone already."""
        seconds = check_seconds("since_s", since_s)
        if seconds <= 0:
            raise InvalidArgument(f"since_s must be above 0, got {since_s!r}", field="since_s")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= RECENT_MAX:
            raise InvalidArgument(f"limit must be 1-{RECENT_MAX}, got {limit!r}", field="limit")
        now_ms = await self.server_time_ms()
        start = max(0, now_ms - int(seconds * 1000))
        async with redis_errors_async(self.client):
            entries: Any = await self.client.xrevrange(self.keys.events, "+", str(start), count=limit)
        results = []
        for raw_id, fields in entries:
            event_id = as_str(raw_id)
            raw = fields.get(b"result", fields.get("result"))
            result = decode_result(raw, as_str(fields.get(b"id", fields.get("id", b"?"))))
            if result is not None:
                results.append((event_id, result))
        return results

    async def task_record(self, task_id: str) -> TaskRecord | None:
        """Everything Redis holds about one task (one round trip), or None when it holds nothing."""
        _check_text("task_id", task_id, _TASK_ID_MAX)
        keys = self.keys
        async with redis_errors_async(self.client), self.client.pipeline(transaction=False) as pipe:
            pipe.hget(keys.tasks, task_id)
            pipe.hget(keys.state, task_id)
            pipe.hget(keys.results, task_id)
            pipe.hget(keys.dead, task_id)
            raw_task, raw_state, raw_result, raw_dead = await pipe.execute()
        if raw_task is None and raw_state is None and raw_result is None and raw_dead is None:
            return None
        task = None
        if raw_task is not None:
            try:
                task = decode_lenient(_task_decoder, raw_task)
            except (ValueError, RecursionError):
                task = None
        state: dict[str, Any] | None = None
        if raw_state is not None:
            try:
                decoded = decode_lenient(_any_decoder, raw_state)
                state = decoded if isinstance(decoded, dict) else {"raw": as_str(raw_state)[:2000]}
            except (ValueError, RecursionError):
                state = {"raw": as_str(raw_state)[:2000]}
        dead = self._decode_dead(raw_dead, task_id)
        history = _history(state) or (dead.history if dead is not None else [])
        result = decode_result(raw_result, task_id)
        status = (state or {}).get("status")
        return TaskRecord(
            id=task_id,
            status=str(status) if status is not None else ("done" if result is not None else None),
            task=task if task is not None else (dead.task if dead is not None else None),
            state=state,
            result=result,
            dead_letter=dead,
            history=history,
        )

    async def task_id_for(self, idempotency_key: str) -> str | None:
        """The id of the task an idempotency key names, or None."""
        _check_text("idempotency_key", idempotency_key, _IDEM_KEY_MAX)
        async with redis_errors_async(self.client):
            raw = await self.client.hget(self.keys.idempotency, idempotency_key)
        return as_str(raw) if raw is not None else None

    async def slot_usage(self, account: str = "default") -> SlotUsage:
        """One solver account's slot limits and its live and ghost slots, as stored (one round trip),
        counted as the acquire script counts them after reaping (and as ``stats`` does): a live slot
        past its lease still counts (it turns into a ghost), a ghost whose hold is over does not."""
        async with redis_errors_async(self.client), self.client.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.slot_limit(account), "configured", "effective", "changed_ms", "busy_answers")
            pipe.zrange(self.keys.slots(account), 0, -1, withscores=True)
            pipe.time()
            limits, members, clock = await pipe.execute()
        configured, effective, changed, busy = (_limit(v) for v in limits)
        now_ms = _time_ms(clock)
        live = sum(1 for m, _ in members if not as_str(m).startswith("#"))
        ghosts = sum(1 for m, score in members if as_str(m).startswith("#") and score >= now_ms)
        return SlotUsage(
            account=account,
            configured=configured,
            effective=effective,
            changed_ms=changed,
            live=live,
            ghosts=ghosts,
            busy_answers=busy or 0,
        )

    async def record_audit(
        self, *, actor: str, role: str, action: str, target: str = "", outcome: str = "", detail: str = ""
    ) -> str:
        """Append one operator action to the audit stream (capped at about AUDIT_MAXLEN); its id.
        Each field is cut to 500 characters; never pass a secret."""
        fields = {"actor": actor, "role": role, "action": action, "target": target, "outcome": outcome}
        fields["detail"] = detail
        for name, value in fields.items():
            if not isinstance(value, str):
                raise InvalidArgument(f"{name} must be a string", field=name)
        _check_text("action", action, _AUDIT_FIELD_MAX)
        clipped: dict[Any, Any] = {k: v[:_AUDIT_FIELD_MAX] for k, v in fields.items()}
        async with redis_errors_async(self.client):
            entry_id = await self.client.xadd(self.keys.audit, clipped, maxlen=AUDIT_MAXLEN, approximate=True)
        return as_str(entry_id)

    async def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        """The newest operator actions first, up to ``limit``."""
        if limit < 1:
            return []
        async with redis_errors_async(self.client):
            entries: Any = await self.client.xrevrange(self.keys.audit, "+", "-", count=limit)
        out = []
        for raw_id, raw_fields in entries:
            entry_id = as_str(raw_id)
            fields = {as_str(k): as_str(v) for k, v in raw_fields.items()}
            out.append(
                AuditEntry(
                    id=entry_id,
                    at_ms=int(entry_id.partition("-")[0]),
                    actor=fields.get("actor", ""),
                    role=fields.get("role", ""),
                    action=fields.get("action", ""),
                    target=fields.get("target", ""),
                    outcome=fields.get("outcome", ""),
                    detail=fields.get("detail", ""),
                )
            )
        return out

    # -- the fleet: pauses, workers, Redis time (docs/design.md, "Fleet keys") ------------------

    async def server_time_ms(self) -> int:
        """Redis server time in ms: the clock leases, heartbeats and pauses are written in."""
        async with redis_errors_async(self.client):
            return _time_ms(await self.client.time())

    async def pause_state(self, account: str | None = None) -> PauseState:
        """The pauses in force: the namespace's and every account's (``account``: only that account's,
        by its ref ``name/key fingerprint``; one round trip), at one Redis server time."""
        keys = self.keys
        async with redis_errors_async(self.client):
            async with self.client.pipeline(transaction=False) as pipe:
                self._queue_fleet_pause(pipe)
                if account is None:
                    pipe.smembers(keys.paused_accounts)
                else:
                    pipe.hgetall(keys.account_paused(_check_ref("account", account)))
                time_reply, fleet_raw, third = await pipe.execute()
            if account is None:
                refs = sorted(as_str(r) for r in third)
                async with self.client.pipeline(transaction=False) as pipe:
                    for ref in refs:
                        pipe.hgetall(keys.account_paused(ref))
                    stored: list[Any] = await pipe.execute() if refs else []
            else:
                refs, stored = [account], [third]
        now_ms, fleet = _fleet_pause(time_reply, fleet_raw)
        accounts = (parse_pause(raw, ref) for ref, raw in zip(refs, stored, strict=True))
        return PauseState(
            now_ms=now_ms,
            fleet=fleet,
            accounts=tuple(p for p in accounts if p is not None and p.active(now_ms)),
        )

    def _queue_fleet_pause(self, pipe: Any) -> None:
        """Queue the reads of the namespace's pause in ``pipe``: Redis time, then the pause hash
        (``_fleet_pause`` reads their replies). ``pause_state`` and ``stats`` both read it so."""
        pipe.time()
        pipe.hgetall(self.keys.paused)

    async def pause(
        self,
        reason: str = "paused by operator",
        for_s: float | None = None,
        *,
        account: str | None = None,
        code: str = OPERATOR_CODE,
        worker: str | None = None,
    ) -> tuple[Pause, bool]:
        """Pause claiming: every worker of the namespace, or (``account``: a ref, ``name/key
        fingerprint``) the workers of one solver account. ``for_s``: the pause ends by itself then.

        An operator's pause (``code`` OPERATOR, the default) replaces any pause in place and is
        lifted only by ``resume``. Another code is the account breaker's (the service's error code):
        an active pause is kept as it is (an open-ended one replaces a timed one), and an account
        probe may lift it. ``worker`` is stored as who paused. Returns the pause in force and whether
        this call wrote it. Bad arguments raise InvalidArgument and nothing is written.
        """
        _check_text("reason", reason, _REASON_MAX)
        _check_name("code", code, _CODE_RE, "1-64 letters, digits, '_', '.', ':', '-'")
        pause_ms = ""
        if for_s is not None:
            seconds = check_seconds("for_s", for_s)
            if seconds <= 0 or seconds > 1e9:
                raise InvalidArgument(
                    f"for_s must be above 0 and at most 1e9 seconds, got {for_s!r}", field="for_s"
                )
            pause_ms = str(max(1, int(seconds * 1000)))
        who: list[str] = []
        if worker is not None:
            who += ["worker", _check_text("worker", worker, _WORKER_ID_MAX)]
        if account is not None:
            name, _, fingerprint = _check_ref("account", account).partition("/")
            who += ["account", name] + (["key", fingerprint] if fingerprint else [])
        key = self.keys.paused if account is None else self.keys.account_paused(account)
        mode = "replace" if code == OPERATOR_CODE else "keep"
        async with redis_errors_async(self.client):
            started, since_ms = await self.scripts.pauseFleet(
                self.client,
                [key, self.keys.paused_accounts],
                [reason, code, pause_ms, account or "", mode, *who],
            )
            if started:
                fields: dict[Any, Any] = dict(zip(who[::2], who[1::2], strict=True))
                fields.update(reason=reason, code=code, since_ms=since_ms)
                if pause_ms:
                    fields["until_ms"] = int(since_ms) + int(pause_ms)
            else:
                fields = await self.client.hgetall(key)
        pause = parse_pause(fields, account)
        if pause is None:  # the pause in force ended between the script and the read
            pause = Pause(reason=reason, code=code, since_ms=int(since_ms), ref=account)
        return pause, bool(started)

    async def resume(self, account: str | None = None, *, since_ms: int | None = None) -> list[Pause]:
        """Lift the namespace's pause and every account's; ``account``: only the pauses of that
        account (its ref, name or key fingerprint). With ``since_ms`` (an account probe that worked)
        only the account pause (by ref) that began then, and never an operator's. Blocked claimers
        wake at once. Returns the pauses lifted that were in force."""
        if since_ms is not None and (
            isinstance(since_ms, bool) or not isinstance(since_ms, int) or since_ms < 0 or account is None
        ):
            raise InvalidArgument(
                "since_ms must be a time in ms, given with the account's ref", field="since_ms"
            )
        targets: list[str | None] = []  # None: the namespace's pause; else an account ref
        if account is None:
            async with redis_errors_async(self.client):
                refs = await self.client.smembers(self.keys.paused_accounts)
            targets = [None, *sorted(as_str(r) for r in refs)]
        elif since_ms is not None:
            targets = [_check_ref("account", account)]
        else:
            _check_ref("account", account)
            state = await self.pause_state()
            targets = [p.ref for p in state.accounts if p.matches(account)]
        lifted = []
        for ref in targets:
            key = self.keys.paused if ref is None else self.keys.account_paused(ref)
            async with redis_errors_async(self.client):
                reply = await self.scripts.liftPause(
                    self.client,
                    [key, self.keys.paused_accounts, self.keys.wake],
                    ["" if since_ms is None else str(since_ms), ref or ""],
                )
            pause = parse_pause(dict(zip(reply[::2], reply[1::2], strict=True)), ref)
            if pause is not None:
                lifted.append(pause)
        if not lifted:
            return []
        now_ms = await self.server_time_ms()
        return [p for p in lifted if p.active(now_ms)]

    async def probe_turn(self, account: str, every_s: float) -> int | None:
        """For the account breaker: whether this caller probes ``account``'s pause now (one caller
        per ``every_s`` for the whole fleet). Returns the since_ms of the pause to probe (pass it to
        ``resume`` when the probe works), or None: not this caller's turn, no open pause, or an
        operator's."""
        seconds = check_seconds("every_s", every_s)
        if seconds <= 0:
            raise InvalidArgument(f"every_s must be above 0, got {every_s!r}", field="every_s")
        key = self.keys.account_paused(_check_ref("account", account))
        async with redis_errors_async(self.client):
            verdict, since_ms = await self.scripts.probePause(
                self.client, [key], [max(1, int(seconds * 1000))]
            )
        return int(since_ms) if verdict == 1 else None

    async def workers(self, include_dead: bool = False) -> list[WorkerEntry]:
        """Registered worker processes, live ones first then by id (``include_dead``: also those
        whose heartbeat lapsed and that are not forgotten yet), read at one Redis server time; each
        with the drain request pending for it (``WorkerEntry.drain``)."""
        async with redis_errors_async(self.client), self.client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.zrange(self.keys.workers, 0, -1, withscores=True)
            pipe.hgetall(self.keys.worker_info)
            pipe.hgetall(self.keys.worker_drains)
            time_reply, deadlines, raw_info, raw_drains = await pipe.execute()
        now_ms = _time_ms(time_reply)
        info_by_id = {as_str(k): v for k, v in raw_info.items()}
        drains = _decode_drains(raw_drains)
        entries = []
        for raw_id, score in deadlines:
            worker_id, deadline_ms = as_str(raw_id), int(score)
            if deadline_ms <= now_ms and not include_dead:
                continue
            entries.append(
                WorkerEntry(
                    id=worker_id,
                    alive=deadline_ms > now_ms,
                    heartbeat_deadline_ms=deadline_ms,
                    heartbeat_in_s=round((deadline_ms - now_ms) / 1000, 3),
                    info=_decode_info(info_by_id.get(worker_id)),
                    drain=drains.get(worker_id),
                )
            )
        entries.sort(key=lambda e: (not e.alive, e.id))
        return entries

    async def register_worker(self, worker_id: str, info: Mapping[str, Any], *, ttl_s: float = 30.0) -> int:
        """Register a worker process, or renew its registration: it counts as live for ``ttl_s``
        (``info``: what ``workers()`` shows of it). Returns the number of live workers."""
        live, _ = await self.heartbeat_worker(worker_id, info, ttl_s=ttl_s)
        return live

    async def heartbeat_worker(
        self, worker_id: str, info: Mapping[str, Any], *, ttl_s: float = 30.0
    ) -> tuple[int, WorkerDrain | None]:
        """``register_worker``, also answering the drain request pending for this worker (one
        script call): the number of live workers, and the request or None. A worker that gets a
        request drains: no new claims, its tasks finished (or released after its grace period),
        unregistered (which deletes the request)."""
        seconds = check_seconds("ttl_s", ttl_s)
        if seconds <= 0:
            raise InvalidArgument(f"ttl_s must be above 0, got {ttl_s!r}", field="ttl_s")
        if not isinstance(info, Mapping):
            raise InvalidArgument("info must be a mapping", field="info")
        return await self._heartbeat(worker_id, int(seconds * 1000), _encoder.encode(dict(info)).decode())

    async def unregister_worker(self, worker_id: str) -> int:
        """Drop a worker's registration (it stops) and its drain request. Returns the number of live
        workers."""
        live, _ = await self._heartbeat(worker_id, 1, "")
        return live

    async def _heartbeat(self, worker_id: str, ttl_ms: int, payload: str) -> tuple[int, WorkerDrain | None]:
        _check_text("worker_id", worker_id, _WORKER_ID_MAX)
        args = [worker_id, ttl_ms, payload, int(FORGET_WORKER_AFTER_S * 1000)]
        keys = [self.keys.workers, self.keys.worker_info, self.keys.worker_drains]
        async with redis_errors_async(self.client):
            reply = await self.scripts.heartbeatWorker(self.client, keys, args)
        # { OK, live workers, drain request JSON or '' }
        return int(reply[1]), _decode_drain(reply[2]) if len(reply) > 2 and reply[2] else None

    async def drain_worker(self, worker_id: str, *, reason: str = "drained by operator") -> bool:
        """Ask one live worker process to drain: at its next heartbeat it stops claiming, finishes
        the tasks it holds (releasing those still running after its grace period), unregisters and
        exits 0; a child of ``worker --processes P`` that drained is not restarted. False when no
        live worker has this id (nothing written). A request already pending is kept (its reason
        stands). Bad arguments raise InvalidArgument and nothing is written."""
        _check_text("worker_id", worker_id, _WORKER_ID_MAX)
        if not worker_id.isprintable():
            raise InvalidArgument(
                f"worker_id {reprlib.repr(worker_id)} must be printable characters", field="worker_id"
            )
        _check_text("reason", reason, _REASON_MAX)
        async with redis_errors_async(self.client):
            reply = await self.scripts.requestDrain(
                self.client, [self.keys.workers, self.keys.worker_drains], [worker_id, reason]
            )
        if int(reply[0]) == Code.NOT_FOUND:
            return False
        self._check(reply, worker_id)
        return True

    async def drain_requests(self) -> dict[str, WorkerDrain]:
        """The drain requests pending, by worker id (a worker deletes its own when it unregisters)."""
        async with redis_errors_async(self.client):
            raw = await self.client.hgetall(self.keys.worker_drains)
        return _decode_drains(raw)


def _fleet_pause(time_reply: tuple[Any, Any], raw: Mapping[Any, Any]) -> tuple[int, Pause | None]:
    """Redis time in ms and the namespace's pause in force then (None: no pause, or it is over)."""
    now_ms = _time_ms(time_reply)
    pause = parse_pause(raw)
    return now_ms, pause if pause is not None and pause.active(now_ms) else None


def _time_ms(reply: tuple[Any, Any]) -> int:
    """A TIME reply (seconds, microseconds) in ms: the one reading of the Redis clock."""
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


def _decode_info(raw: bytes | str | None) -> dict[str, Any]:
    """A worker's registration JSON; an unreadable one is kept as ``{"raw": ...}`` to show."""
    if raw is None:
        return {}
    try:
        decoded = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return {"raw": as_str(raw)[:200]}
    return decoded if isinstance(decoded, dict) else {"raw": decoded}


def _decode_drain(raw: bytes | str | None) -> WorkerDrain | None:
    """A stored drain request; an unreadable one still asks for a drain (its reason says so)."""
    if raw is None:
        return None
    try:
        return _drain_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return WorkerDrain(reason="(unreadable drain request)", since_ms=0)


def _decode_drains(raw: Mapping[Any, Any]) -> dict[str, WorkerDrain]:
    decoded = {as_str(k): _decode_drain(v) for k, v in raw.items()}
    return {k: v for k, v in decoded.items() if v is not None}


_drain_decoder = msgspec.json.Decoder(WorkerDrain)
_task_decoder = msgspec.json.Decoder(Task)
_any_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


def _history(state: dict[str, Any] | None) -> list[Attempt]:
    """The attempts a task state holds (an unreadable history reads as none)."""
    raw = (state or {}).get("history")
    if not isinstance(raw, list):
        return []
    try:
        return msgspec.convert(raw, list[Attempt])
    except msgspec.ValidationError:
        return []

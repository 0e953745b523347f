"""The shapes that travel: tasks, results, claims, stats. msgspec structs, JSON on the wire.

Timestamps that are stored (``*_at``) are wall-clock seconds since the epoch as a float, taken
from Redis server time where Redis writes them; durations (``*_s``) are seconds.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "PRIORITIES",
    "AccountInfo",
    "AccountSpec",
    "AccountStats",
    "Attempt",
    "AuditEntry",
    "Claim",
    "DataLoss",
    "DeadLetter",
    "Pause",
    "PauseState",
    "Priority",
    "RenewOutcome",
    "ReportBacklog",
    "ReportRequest",
    "Result",
    "SlotUsage",
    "Solution",
    "Stats",
    "Status",
    "Task",
    "TaskRecord",
    "TaskSpec",
    "WorkerDrain",
    "WorkerEntry",
]

Priority = Literal["high", "normal", "low"]
#: Claim order: every "high" task is taken before any "normal", and so on.
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")

Status = Literal["success", "error", "cancelled", "expired"]

#: A task parameter: what the solver protocol can carry in a form field.
ParamValue = str | int | float


class Solution(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the solver answered.

    ``text`` is the answer exactly as the service sent it (token, OCR text, or a JSON document as
    text); ``data`` holds the parsed JSON for methods that answer with JSON (GeeTest, grid, BLS,
    Lemin); ``user_agent`` is set when the service says which browser produced a token.
    """

    text: str
    user_agent: str | None = None
    data: Any = None

    def __str__(self) -> str:
        return self.text


class AccountInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """The solver account as the service reports it."""

    threads: int | None = None
    working_threads: int | None = None
    balance: float | None = None


class AccountSpec(msgspec.Struct, frozen=True, omit_defaults=True):
    """One solver account of a namespace, as the registry keeps it (``captcha-queue accounts``).

    The API key is never stored: ``key_env`` names the environment variable a worker reads it from,
    or ``key_file`` + ``key_entry`` name a secrets file (``entry=key`` lines) and the entry in it.
    Routing takes accounts by ``priority`` (higher first), then ``cost`` (lower first: a relative cost
    per solve), then name; ``methods`` (empty: every method the provider serves) limits what it gets.
    ``limit`` is the account's fleet limit (solves in flight); None: the threads the account reports
    (providers that report them only).
    """

    name: str
    provider: str = "captchaai"
    base_url: str | None = None  # None: the provider's own
    limit: int | None = None
    priority: int = 0
    cost: float = 1.0
    key_env: str | None = None
    key_file: str | None = None
    key_entry: str | None = None
    methods: tuple[str, ...] = ()

    @property
    def key_source(self) -> str:
        """Where the key is read from, for people (never the key): ``env:NAME`` or ``file:PATH#ENTRY``."""
        if self.key_env is not None:
            return f"env:{self.key_env}"
        return f"file:{self.key_file}#{self.key_entry}"


class AccountStats(msgspec.Struct, frozen=True, omit_defaults=True):
    """One registered account now: its fleet slots, its pause, the live workers serving it and the
    tasks they hold, its balance as they last read it."""

    name: str
    provider: str
    slots_used: int = 0
    slots_limit: int | None = None
    paused: str | None = None  # the pause's reason while the account is paused
    pause_code: str | None = None
    workers: int = 0
    in_flight: int = 0
    balance: float | None = None  # as its live workers last read it (the service's units)
    balance_at: float | None = None  # when (unix time, s)


class Task(msgspec.Struct, frozen=True, omit_defaults=True):
    """A submitted task as stored in Redis (its immutable part)."""

    id: str
    method: str
    params: dict[str, ParamValue]
    priority: Priority = "normal"
    max_attempts: int = 3
    submitted_at: float = 0.0
    expires_at: float | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None
    #: Where the result is delivered when final (captcha_queue.webhooks), and how ("form" when None).
    pingback: str | None = None
    pingback_format: str | None = None


class TaskSpec(msgspec.Struct, frozen=True, omit_defaults=True):
    """One entry of ``submit_many``: the same arguments as ``submit``."""

    method: str
    params: dict[str, ParamValue]
    priority: Priority = "normal"
    idempotency_key: str | None = None
    max_attempts: int = 3
    expires_in_s: float | None = None
    metadata: dict[str, Any] | None = None
    pingback: str | None = None
    pingback_format: Literal["form", "get", "json", "jsonapi"] = "form"


class Attempt(msgspec.Struct, frozen=True, omit_defaults=True):
    """One try at a task, kept in its history (and in a dead letter)."""

    attempt: int
    worker_id: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    outcome: str = ""  # "error", "retry", "stalled", "released", ...
    error_code: str | None = None
    error_message: str | None = None


class Result(msgspec.Struct, frozen=True, omit_defaults=True):
    """The one final result of a task."""

    id: str
    status: Status
    method: str
    priority: Priority
    attempts: int
    submitted_at: float
    finished_at: float
    solution: Solution | None = None
    error_code: str | None = None
    error_message: str | None = None
    started_at: float | None = None
    queue_wait_s: float | None = None
    solve_s: float | None = None
    metadata: dict[str, Any] | None = None
    #: Who solved it (success only): the provider (``captchaai``, ``2captcha``, ...), the account as
    #: workers know it (``<name>/<key fingerprint>``, never the key) and the service's id of the solve.
    #: ``AsyncCaptchaQueue.report`` sends a verdict on the answer there.
    provider: str | None = None
    account: str | None = None
    remote_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "success"


class ReportRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """A verdict on a solved task's answer, queued for the account that solved it
    (``AsyncCaptchaQueue.report`` writes it, a worker of that account sends it to the service)."""

    id: str
    remote_id: str
    correct: bool
    account: str
    provider: str | None = None
    requested_at: float = 0.0


class ReportBacklog(msgspec.Struct, frozen=True, omit_defaults=True):
    """The report requests waiting for one account ref (``AsyncCaptchaQueue.report_backlog``): how
    many wait and how many a worker took and has not acked, when the oldest was made, and how many
    live workers serve that ref (0: nobody will send them; ``purge_reports`` drops them)."""

    account: str  # the account ref: <name>/<key fingerprint>
    waiting: int = 0
    taken: int = 0
    oldest_at: float | None = None  # unix time, s
    workers: int = 0


class Claim(msgspec.Struct, frozen=True):
    """A task a worker holds under a lease. Every write about it must present ``lease_token``."""

    task: Task
    attempt: int
    lease_token: str
    worker_id: str
    lease_deadline_ms: int
    remote_id: str | None = None
    remote_submitted_at: float | None = None

    @property
    def task_id(self) -> str:
        return self.task.id


class RenewOutcome(msgspec.Struct, frozen=True):
    """What one ``renew`` call found: leases that were lost, and tasks cancelled meanwhile."""

    renewed: list[str]
    lost: list[str]
    cancelled: list[str]


class DeadLetter(msgspec.Struct, frozen=True, omit_defaults=True):
    """A task that ran out of attempts or could not be read, with the reason and its history."""

    id: str
    reason: str
    dead_at: float
    task: Task | None = None
    raw: str | None = None  # the entry as found in Redis when it could not be parsed
    history: list[Attempt] = []


class Stats(msgspec.Struct, frozen=True):
    """A snapshot of one namespace, read in one round trip."""

    queued: dict[str, int]  # per priority
    delayed: int
    in_flight: int
    completed: int
    failed: int
    dead: int
    cancelled: int
    expired: int
    workers: int
    oldest_queued_age_s: float | None
    paused: str | None = None  # the reason, while the fleet is paused
    solver_slots_used: int = 0
    solver_slots_limit: int | None = None
    submitted: int = 0  # the watermark: every submission ever accepted by this data set
    dead_letters: int = 0  # dead letters held now (``dead`` counts every task ever dead-lettered)
    epoch: str | None = None  # random id of this data set: a change means Redis lost its data

    @property
    def queued_total(self) -> int:
        return sum(self.queued.values())


class DataLoss(msgspec.Struct, frozen=True):
    """Redis came back without the data set this process had seen (restarted empty, flushed, failed
    over to an empty replica). ``lost`` counts the tasks that were queued or in flight then.

    A failover to a replica that had not received the last writes keeps the epoch but rolls the
    counters back: ``submitted_after`` / ``finished_after`` are set then (``rolled_back``), and
    ``lost`` counts the acknowledged submissions that are gone (finishes rolled back are solved again)."""

    epoch_before: str
    epoch_after: str | None
    submitted_before: int
    finished_before: int
    submitted_after: int | None = None
    finished_after: int | None = None

    @property
    def rolled_back(self) -> bool:
        return self.epoch_after == self.epoch_before

    @property
    def lost(self) -> int:
        if self.rolled_back:
            return max(0, self.submitted_before - (self.submitted_after or 0))
        return max(0, self.submitted_before - self.finished_before)

    def describe(self) -> str:
        if self.rolled_back:
            return (
                f"Redis lost its latest writes (a failover to a replica that lacked them; epoch "
                f"{self.epoch_before} kept): {self.lost} tasks that were queued or in flight are gone "
                f"(submitted watermark {self.submitted_before} -> {self.submitted_after}, finished "
                f"{self.finished_before} -> {self.finished_after})"
            )
        return (
            f"Redis lost its data: epoch {self.epoch_before} -> {self.epoch_after or 'none'}; "
            f"{self.lost} tasks that were queued or in flight are gone "
            f"(submitted watermark {self.submitted_before}, finished {self.finished_before})"
        )


class Pause(msgspec.Struct, frozen=True, omit_defaults=True):
    """A pause as stored: the namespace's (the operator's: every worker stops) or one solver account's
    (``ref`` set: only that account's workers stop). Times are Redis server time in ms."""

    reason: str
    code: str | None = None  # OPERATOR, or the service's error code the breaker saw
    since_ms: int | None = None
    until_ms: int | None = None  # None: until resumed (or, for an account, until a probe succeeds)
    ref: str | None = None  # the account as workers report it: name/key fingerprint
    worker: str | None = None  # the worker that paused the account
    account: str | None = None
    key: str | None = None  # the fingerprint of the account's API key (never the key)

    def active(self, now_ms: int) -> bool:
        return self.until_ms is None or self.until_ms > now_ms

    def matches(self, which: str) -> bool:
        """``which`` names this account pause: its ref, its account name or its key's fingerprint."""
        return self.ref is not None and which in (self.ref, self.account, self.key)


class PauseState(msgspec.Struct, frozen=True):
    """The pauses in force, read at one Redis server time ``now_ms``."""

    now_ms: int
    fleet: Pause | None = None  # the namespace's pause
    accounts: tuple[Pause, ...] = ()  # account pauses, by ref

    @property
    def paused(self) -> bool:
        return self.fleet is not None or bool(self.accounts)


class WorkerDrain(msgspec.Struct, frozen=True):
    """An operator's request that one worker process drain (``AdminAPI.drain_worker``): why, and
    when it was made (Redis time, ms). The worker reads it with its next heartbeat."""

    reason: str
    since_ms: int


class WorkerEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """One registered worker process: its heartbeat deadline (Redis time, ms) and what it registered
    about itself (``info``: host, pid, started_at, in_flight, version, concurrency, account, solver,
    key fingerprint; ``{"raw": ...}`` when the registration is not readable JSON); ``drain``: the
    drain request pending for it (it stops claiming at its next heartbeat), or None."""

    id: str
    alive: bool
    heartbeat_deadline_ms: int
    heartbeat_in_s: float  # negative once the deadline has passed
    info: dict[str, Any] = {}
    drain: WorkerDrain | None = None


class SlotUsage(msgspec.Struct, frozen=True):
    """One solver account's slots as stored: the limits (``configured`` by the workers, ``effective``
    after the adaptive back-off on busy answers, ``changed_ms`` its last change, Redis time) and the
    members of its slots set: ``live`` solves held by a worker, ``ghosts`` solves left running at the
    service by a holder that gave them up (counted until they must be over); ``busy_answers``: every
    "no free thread" answer the fleet's workers got from the service for this account."""

    account: str
    configured: int | None
    effective: int | None
    changed_ms: int | None
    live: int
    ghosts: int
    busy_answers: int = 0

    @property
    def used(self) -> int:
        return self.live + self.ghosts


class TaskRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """Everything stored about one task: its immutable part, its state (status, attempts, history),
    its final result and its dead letter, each None when Redis holds none (expired, never written)."""

    id: str
    status: str | None = None
    task: Task | None = None
    state: dict[str, Any] | None = None
    result: Result | None = None
    dead_letter: DeadLetter | None = None
    history: list[Attempt] = []


class AuditEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """One operator action as the audit stream holds it (``id``: its stream id, ms-seq)."""

    id: str
    at_ms: int
    actor: str
    role: str
    action: str
    target: str = ""
    outcome: str = ""
    detail: str = ""

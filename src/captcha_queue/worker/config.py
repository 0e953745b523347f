"""How a worker runs: ``WorkerConfig`` (one ``Worker`` object) and ``WorkerSettings`` (one worker process:
the config plus its connection, solver, logging and metrics).

Every option is declared here once, with its help text, unit, bounds and environment variable
(``captcha_queue.options``): the ``captcha-queue worker`` options, the supervisor's child arguments and
the flag table of docs/workers.md are generated from these fields.
"""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass, field

from ..errors import InvalidArgument
from ..options import check_settings, setting
from ..solvers import DEFAULT_BASE_URL, PROFILES, SOLVER_KINDS
from ..store.keys import validate_account, validate_namespace
from .limiter import LimiterConfig
from .polling import PollConfig
from .retry import RetryPolicy

__all__ = ["WorkerConfig", "WorkerSettings", "parse_namespaces"]

_HOST_RE = re.compile(r"[A-Za-z0-9.:_-]{1,253}")


def _check_host(host: str) -> str:
    """An IP address or a host name: no scheme, port, path or blanks."""
    if not isinstance(host, str) or not _HOST_RE.fullmatch(host):
        raise InvalidArgument(
            f"metrics_host {reprlib.repr(host)} must be an IP address or a host name", field="metrics_host"
        )
    return host


def _check_accounts(value: str) -> str:
    """'all' or a comma-separated list of account names."""
    if value != "all":
        names = [n.strip() for n in value.split(",")]
        if not all(names):
            raise InvalidArgument(
                "accounts must be 'all' or account names separated by commas", field="accounts"
            )
        for name in names:
            validate_account(name)
    return value


#: Bounds of ``--namespaces``: a weight is a small positive integer, a process serves a few namespaces.
MAX_NAMESPACES = 64
MAX_NAMESPACE_WEIGHT = 1000


def parse_namespaces(value: str) -> list[tuple[str, int]]:
    """``"a:3,b:1"`` -> ``[("a", 3), ("b", 1)]``: NAME:WEIGHT pairs, the weight after the last ``:``
    (a namespace name may itself contain ``:``), an integer 1-1000; each name once. InvalidArgument
    (field ``namespaces``) with one message naming what is wrong."""
    from ..store.keys import validate_namespace

    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument("namespaces must be NAME:WEIGHT pairs separated by commas", field="namespaces")
    pairs: list[tuple[str, int]] = []
    for item in (part.strip() for part in value.split(",")):
        name, sep, weight_text = item.rpartition(":")
        if not sep or not name or not weight_text.isascii() or not weight_text.isdigit():
            raise InvalidArgument(
                f"namespaces: {reprlib.repr(item)} is not NAME:WEIGHT (e.g. a:3,b:1; the weight a "
                "positive integer)",
                field="namespaces",
            )
        try:
            validate_namespace(name)
        except InvalidArgument as exc:
            raise InvalidArgument(f"namespaces: {exc}", field="namespaces") from None
        weight = int(weight_text)
        if not 1 <= weight <= MAX_NAMESPACE_WEIGHT:
            raise InvalidArgument(
                f"namespaces: the weight of {name} must be 1-{MAX_NAMESPACE_WEIGHT}, not {weight}",
                field="namespaces",
            )
        if any(name == seen for seen, _ in pairs):
            raise InvalidArgument(f"namespaces: {name} is given twice", field="namespaces")
        pairs.append((name, weight))
    if len(pairs) > MAX_NAMESPACES:
        raise InvalidArgument(
            f"namespaces: at most {MAX_NAMESPACES} namespaces per process", field="namespaces"
        )
    return pairs


def _check_namespaces(value: str) -> str:
    parse_namespaces(value)
    return value


def account_names(value: str | None) -> list[str] | None:
    """The names ``accounts`` lists (None: 'all' or unset)."""
    if value is None or value == "all":
        return None
    return list(dict.fromkeys(n.strip() for n in value.split(",")))


@dataclass(frozen=True)
class WorkerConfig:
    """How one worker process runs. Durations are real seconds; ``time_scale`` scales the solver pacing
    (poll cadence is the solver's, already scaled), retry backoffs, probes, the busy pause and the resume
    window. Fields without a ``setting`` are library-only tuning."""

    concurrency: int = setting(200, help="Tasks in flight per process.", unit="tasks", min=1)
    lease_s: float = setting(
        30.0,
        help="Task lease; renewed every third of it, in one call for all tasks of a process.",
        unit="s",
        min=0.1,
    )
    renew_every_s: float | None = None  # default: a third of the lease
    claim_batch_max: int = 200
    claim_block_s: float = 2.0
    prefetch: int | None = None  # claimed tasks allowed to wait for a slot; default max(16, C / 10)
    solver_limit: int | None = setting(
        None,
        help="Fleet-wide solves in flight (N), shared by every worker of the account.",
        unit="solves",
        min=1,
        default_text="the account's threads (threadsinfo)",
    )
    resume_window_s: float = setting(
        600.0,
        help="Resume a reclaimed task's remote id if it is younger than this (time-scaled).",
        unit="s",
        min=0.0,
    )
    grace_s: float = setting(30.0, help="How long a shutdown waits for in-flight solves.", unit="s", min=0.0)
    time_scale: float = setting(
        1.0,
        help="Scale poll delays, backoffs, probes, pauses and the resume window (for a time-scaled "
        "simulator).",
        unit="factor",
        min=0.0,
        min_open=True,
    )
    probe_every_s: float = 60.0
    limit_refresh_s: float = 60.0
    report_expire_s: float = setting(
        86400.0,
        help="Report requests (refund claims) older than this are dropped unsent by the workers' sweep, "
        'counted as captcha_queue_reports_total{outcome="expired"}: those of an account no worker '
        "serves any more would wait forever (time-scaled; 0: never).",
        unit="s",
        min=0.0,
        max=1e9,
    )
    balance_refresh_s: float = setting(
        300.0,
        help="How often a worker asks its account's balance (account_info) when nothing else did "
        "meanwhile (start, limit refresh, breaker probe); registered with the worker, it is what the "
        "gateway's getbalance sums (time-scaled; 0: only at start and in probes).",
        unit="s",
        min=0.0,
        max=1e9,
    )
    #: Busy answers in a row (any task of this process) after which the account is paused for
    #: ``busy_pause_s``: busy that does not clear is no capacity at all (2captcha's zero balance).
    busy_pause_after: int = setting(
        20,
        help="Busy answers in a row (no free thread, zero balance...) after which the account is "
        "paused for --busy-pause-s; its tasks go back to the queue.",
        unit="answers",
        min=1,
    )
    busy_pause_s: float = setting(
        60.0,
        help="How long busy answers that did not clear pause the account (time-scaled).",
        unit="s",
        min=0.0,
        min_open=True,
        max=1e9,
    )
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    poll: PollConfig = field(default_factory=PollConfig)
    limiter: LimiterConfig = field(default_factory=LimiterConfig)

    def __post_init__(self) -> None:
        check_settings(self)  # InvalidArgument (a ValueError) naming the field

    @property
    def renew_period_s(self) -> float:
        return self.renew_every_s if self.renew_every_s is not None else self.lease_s / 3

    @property
    def buffer(self) -> int:
        return self.prefetch if self.prefetch is not None else max(16, self.concurrency // 10)


@dataclass(frozen=True)
class WorkerSettings(WorkerConfig):
    """One worker process: ``WorkerConfig`` plus what ``run_worker`` needs to build its queue, solver,
    logging and metrics. ``captcha-queue worker`` is this, read from flags and the environment."""

    processes: int | None = setting(
        None,
        help="Worker processes to run and supervise (the command only; run_worker runs one); a child "
        "that dies is restarted with backoff; all stop together.",
        unit="processes",
        min=1,
        child=False,
        default_text="CPU count",
    )
    solver: str = setting(
        "captchaai",
        help="The solver provider (docs/providers.md): captchaai, 2captcha, 2captcha-v2 (its JSON API), "
        "capsolver, anticaptcha, generic-inphp (any 2captcha-compatible in.php service: give "
        "--solver-url); all but captchaai need --solver-limit; instant: answers in process (no network).",
        choices=SOLVER_KINDS,
    )
    account: str = setting(
        "default",
        help="Solver account name: the key of the fleet-wide limit (never derived from the API key); "
        "give each API key its own.",
        check=validate_account,
    )
    accounts: str | None = setting(
        None,
        help="Serve these registered accounts (captcha-queue accounts add), comma-separated, or 'all': "
        "one process routes each task to an account (priority, cost, methods) and fails over when one "
        "pauses; each account's key is read from its reference (env var or secrets file). Replaces "
        "--account, --solver-url and the API key.",
        check=_check_accounts,
        default_text="one account: --account with CAPTCHAAI_KEY",
    )
    namespaces: str | None = setting(
        None,
        help="Serve these namespaces with weights, NAME:WEIGHT,... (e.g. a:3,b:1): one Worker per "
        "namespace on the same account; each gets a static share of the account's fleet limit N and "
        "of --concurrency proportional to its weight (at least 1 each, the shares sum to N). Replaces "
        "--namespace. With --accounts, each namespace serves the accounts registered in it, and an "
        "account registered in several is split between them the same way.",
        check=_check_namespaces,
        default_text="one namespace: --namespace",
    )
    request_timeout_s: float = setting(
        30.0,
        help="Give up one in.php / res.php request after this long (real seconds, not time-scaled).",
        unit="s",
        min=0.1,
    )
    startup_timeout_s: float = setting(
        30.0,
        help="Redis unreachable at start: keep trying this long (real seconds), then exit 1 with one "
        "line, whatever --processes (a child that cannot reach it stops the whole fleet).",
        unit="s",
        min=0.0,
    )
    metrics_port: int | None = setting(
        None,
        help="Serve Prometheus /metrics on this port (each child of --processes P on port + i; 0: any).",
        unit="port",
        min=0,
        max=65535,
        default_text="off",
    )
    metrics_host: str = setting(
        "127.0.0.1",
        help="Address the metrics server binds (with /healthz and /readyz). Any other than loopback is "
        "an explicit choice, logged as a warning: the endpoint has no authentication.",
        check=_check_host,
    )
    log_format: str = setting(
        "text", help="Log lines as text or one JSON object each.", choices=("text", "json")
    )
    log_level: str = setting("info", help="Log level.", choices=("debug", "info", "warning", "error"))
    namespace: str = setting(
        "captcha", help="Queue namespace.", env="CAPTCHA_QUEUE_NAMESPACE", check=validate_namespace
    )
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        help="Redis URL. Prefer the environment: a password on a command line is visible to every "
        "local user; children get it in their environment.",
        env="REDIS_URL",
        child=False,
    )
    solver_url: str = setting(
        DEFAULT_BASE_URL,
        help="Base URL of the solver service or the simulator (children get it in their environment); "
        "CaptchaAI's default means the chosen provider's own base URL.",
        env="CAPTCHAAI_URL",
        child=False,
    )
    api_key: str | None = setting(
        None,
        help="The solver API key (or the root option --captchaai-key-file).",
        env="CAPTCHAAI_KEY",
        secret=True,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.namespaces is not None:
            self._check_namespace_shares()
        profile = PROFILES.get(self.solver)
        if profile is not None and profile.requires_limit and self.solver_limit is None:
            raise InvalidArgument(
                f"--solver {self.solver}: {profile.title} tells no thread limit (no threadsinfo); "
                "give the account's threads with --solver-limit N",
                field="solver_limit",
            )
        if profile is not None and profile.base_url is None and self.solver_url == DEFAULT_BASE_URL:
            raise InvalidArgument(
                f"--solver {self.solver} has no default base URL: give --solver-url", field="solver_url"
            )

    def _check_namespace_shares(self) -> None:
        """Each namespace needs at least one task in flight and, with a given N, one fleet slot."""
        count = len(parse_namespaces(self.namespaces or ""))
        if self.concurrency < count:
            raise InvalidArgument(
                f"--namespaces: {count} namespaces need --concurrency {count} at least (one task each), "
                f"not {self.concurrency}",
                field="namespaces",
            )
        if self.accounts is None and self.solver_limit is not None and self.solver_limit < count:
            raise InvalidArgument(
                f"--namespaces: {count} namespaces need --solver-limit {count} at least (one slot each), "
                f"not {self.solver_limit}",
                field="namespaces",
            )

    @property
    def provider_url(self) -> str | None:
        """The base URL to use: ``solver_url``, or the provider's own when it is CaptchaAI's default."""
        if self.solver_url == DEFAULT_BASE_URL and self.solver != "captchaai":
            return None
        return self.solver_url

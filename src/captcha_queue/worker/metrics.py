"""Prometheus metrics for a worker process: an observer the runtime calls, on a private registry.

Every ``WorkerMetrics`` owns its ``CollectorRegistry`` (nothing touches prometheus_client's global
one), so two workers in one process, or a test next to a worker, never collide. Label children are
resolved once and kept in dicts, so recording a task costs a dict lookup and a locked add.

Wiring it into the worker runtime (every call is cheap, synchronous and never raises)::

    metrics = WorkerMetrics()
    server = metrics.serve(port, host="127.0.0.1", readiness=ready)   # --metrics-port/--metrics-host
    refresher = asyncio.create_task(metrics.run_refresher(queue, interval_s=5.0), name="metrics")

    metrics.task_started(claim)                  # after claim(), once per claimed task
    metrics.task_finished(result)                # with the Result that complete/fail/expire returned
    metrics.retry(exc)                           # when fail(..., retry_in_s=...) scheduled a retry
    metrics.solver_request("in", "OK")           # after each in.php call: "OK" or the error's .code
    metrics.solver_request("res", "CAPCHA_NOT_READY")   # per id polled on res.php
    metrics.set_in_flight(n)                     # whenever the in-flight count changes (or per tick)
    metrics.set_slots(used, limit)               # from the fleet-wide limiter
    metrics.set_paused(True)                     # from the breaker (False on resume)
    metrics.set_account_paused(True)             # this process's account paused (False on resume)
    metrics.account_paused("ERROR_ZERO_BALANCE") # this process paused its account, for that code
    metrics.set_limit_unknown(True)              # no fleet limit known yet: no solve is sent
    metrics.report("main/0123456789ab", "bad", "sent")  # a verdict sent to an account (refunds)

The server answers ``/metrics`` (and ``/``), ``/healthz`` (200 ``ok``: the process is alive) and, given a
``readiness`` callable (``health.Readiness.from_thread``), ``/readyz`` (200 or 503 with a JSON body).

The refresher reads ``queue.stats()`` (one round trip) every ``interval_s`` and sets the
namespace-wide series; a Redis outage only skips a refresh.

Process-level series (``tasks_*``, ``retries``, ``solver_requests``, the histograms, ``worker_in_flight``)
sum across worker processes. Namespace-level series (``queued``, ``delayed``, ``in_flight``, ``workers``,
``oldest_queued_age_seconds``, ``dead_letters``, ``namespace_*``) are the same value seen by every worker:
aggregate them with ``max``, not ``sum``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from ..errors import CaptchaQueueError, SolverBusy, TransientError, Unsolvable
from ..models import PRIORITIES, Result, Stats

if TYPE_CHECKING:
    from ..models import Claim

__all__ = [
    "ENDPOINTS",
    "RETRY_REASONS",
    "STATUSES",
    "ForwardingEvents",
    "MetricsServer",
    "ReadyCheck",
    "WorkerMetrics",
    "is_loopback",
    "serve_metrics",
]

log = logging.getLogger(__name__)

PREFIX = "captcha_queue"
STATUSES: tuple[str, ...] = ("success", "error", "cancelled", "expired")
RETRY_REASONS: tuple[str, ...] = ("transient", "unsolvable", "busy", "stalled", "other")
ENDPOINTS: tuple[str, ...] = ("in", "res", "other")
#: A label value that is not one of the expected ones is counted here instead of growing a series.
OTHER = "other"

#: Most tasks wait and solve for well under a minute; time-scaled runs go down to milliseconds.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
SOLVE_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300)

#: Service codes are upper-case words (ERROR_PAGEURL, HTTP_502, CAPCHA_NOT_READY): nothing else is a
#: label value, so no free text (and no lower-case hex API key) can ever reach a series name.
_CODE_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,47}$")
_METHOD_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
#: Account refs as workers know them: ``<name>`` or ``<name>/<12 hex digits of a key's HMAC>``.
_ACCOUNT_LABEL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}(/[A-Za-z0-9_.-]{1,64})?$")
_MAX_CODES = 200  # distinct (endpoint, code) pairs kept before new ones count as "other"
_MAX_METHODS = 32


class _QueueLike(Protocol):
    """What the refresher needs from an AsyncCaptchaQueue."""

    async def stats(self) -> Stats: ...


class _SnapshotCounters(Collector):
    """Counters whose values live in Redis (namespace-wide), exported as last read."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for name, value in sorted(self.values.items()):
            family.add_metric([name], value)
        return [family]

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            f"{PREFIX}_namespace_events",
            "Namespace-wide counters kept in Redis (submitted, completed, failed, dead, cancelled,"
            " expired), as last read: the same value on every worker.",
            labels=["event"],
        )


class WorkerMetrics:
    """The collectors of one worker process, and the hooks the runtime calls to feed them."""

    def __init__(self, registry: CollectorRegistry | None = None, *, methods: Iterable[str] = ()) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        #: Whether the runtime said the fleet limit is known (``set_limit_unknown(False)``): /readyz.
        self.limit_known = False
        reg = self.registry

        # -- process-level counters -----------------------------------------------------------
        self._started = Counter(
            f"{PREFIX}_tasks_started", "Tasks claimed and started by this process.", registry=reg
        )
        finished = Counter(
            f"{PREFIX}_tasks_finished",
            "Tasks this process finished, by final status.",
            ["status"],
            registry=reg,
        )
        self._finished = {status: finished.labels(status) for status in STATUSES}
        retries = Counter(
            f"{PREFIX}_retries",
            "Attempts that ended in a scheduled retry, by reason.",
            ["reason"],
            registry=reg,
        )
        self._retries = {reason: retries.labels(reason) for reason in RETRY_REASONS}
        self._solver_requests_family = Counter(
            f"{PREFIX}_solver_requests",
            "Requests to the solver service, by endpoint (in, res) and the code it answered.",
            ["endpoint", "code"],
            registry=reg,
        )
        self._solver_requests: dict[tuple[str, str], Any] = {}
        for endpoint, code in (("in", "OK"), ("res", "OK"), ("res", "CAPCHA_NOT_READY")):
            self._solver_request_child(endpoint, code)

        # -- process-level histograms -----------------------------------------------------------
        wait = Histogram(
            f"{PREFIX}_queue_wait_seconds",
            "From submission to the claim that finished the task, by priority.",
            ["priority"],
            buckets=LATENCY_BUCKETS_S,
            registry=reg,
        )
        self._queue_wait = {p: wait.labels(p) for p in PRIORITIES}
        e2e = Histogram(
            f"{PREFIX}_end_to_end_seconds",
            "From submission to the final result, by priority.",
            ["priority"],
            buckets=LATENCY_BUCKETS_S,
            registry=reg,
        )
        self._end_to_end = {p: e2e.labels(p) for p in PRIORITIES}
        self._solve_family = Histogram(
            f"{PREFIX}_solve_seconds",
            "Time spent solving (solver submit to answer) of finished tasks, by method.",
            ["method"],
            buckets=SOLVE_BUCKETS_S,
            registry=reg,
        )
        self._solve: dict[str, Any] = {}
        for method in (*methods, OTHER):
            self._solve_child(method)

        # -- process-level gauges ---------------------------------------------------------------
        self._worker_in_flight = Gauge(
            f"{PREFIX}_worker_in_flight", "Tasks this process holds right now.", registry=reg
        )
        self._slots_used = Gauge(
            f"{PREFIX}_solver_slots_used", "Fleet-wide solver slots in use on the account.", registry=reg
        )
        self._slots_limit = Gauge(
            f"{PREFIX}_solver_slots_limit",
            "Fleet-wide solver slot limit in effect (after back-off); NaN when unknown.",
            registry=reg,
        )
        self._slots_limit.set(math.nan)
        self._paused = Gauge(
            f"{PREFIX}_paused",
            "1 while claiming is paused fleet-wide (captcha-queue pause).",
            registry=reg,
        )
        self._account_paused = Gauge(
            f"{PREFIX}_account_paused",
            "1 while this process's solver account is paused (account error, or busy that did not clear).",
            registry=reg,
        )
        self._account_pauses = Counter(
            f"{PREFIX}_account_pauses",
            "Pauses of its solver account this process started, by the service's code.",
            ["code"],
            registry=reg,
        )
        self._reports_family = Counter(
            f"{PREFIX}_reports",
            "Verdicts on answers (refund claims) this process sent (outcome sent or error), or dropped "
            "unsent as too old (expired), by account, verdict and outcome.",
            ["account", "verdict", "outcome"],
            registry=reg,
        )
        # -- per account (a worker serving several accounts: --accounts) ------------------------
        self._acct_finished = Counter(
            f"{PREFIX}_account_tasks_finished",
            "Tasks this process finished on each solver account, by final status.",
            ["account", "status"],
            registry=reg,
        )
        self._acct_in_flight = Gauge(
            f"{PREFIX}_account_in_flight",
            "Tasks this process holds for each account.",
            ["account"],
            registry=reg,
        )
        self._acct_slots_used = Gauge(
            f"{PREFIX}_account_slots_used",
            "Fleet-wide solver slots in use, per account.",
            ["account"],
            registry=reg,
        )
        self._acct_slots_limit = Gauge(
            f"{PREFIX}_account_slots_limit",
            "Fleet-wide solver slot limit in effect per account; NaN when unknown or none.",
            ["account"],
            registry=reg,
        )
        self._acct_paused = Gauge(
            f"{PREFIX}_account_paused_state",
            "1 while the account is paused (account error, busy that did not clear, operator).",
            ["account"],
            registry=reg,
        )
        self._acct_state: dict[str, dict[str, float]] = {}
        self._limit_unknown = Gauge(
            f"{PREFIX}_solver_limit_unknown",
            "1 while the fleet limit is unknown (the account has not answered): no solve is sent.",
            registry=reg,
        )

        # -- namespace-level gauges, set by the refresher ----------------------------------------
        queued = Gauge(
            f"{PREFIX}_queued", "Tasks waiting to be claimed, by priority.", ["priority"], registry=reg
        )
        self._queued = {p: queued.labels(p) for p in PRIORITIES}
        self._delayed = Gauge(f"{PREFIX}_delayed", "Tasks waiting for a scheduled retry.", registry=reg)
        self._in_flight = Gauge(f"{PREFIX}_in_flight", "Tasks claimed by any worker.", registry=reg)
        self._workers = Gauge(f"{PREFIX}_workers", "Live worker processes.", registry=reg)
        self._oldest = Gauge(
            f"{PREFIX}_oldest_queued_age_seconds",
            "Age of the oldest queued task (0 when none).",
            registry=reg,
        )
        self._dead = Gauge(f"{PREFIX}_dead_letters", "Dead letters held now.", registry=reg)
        self._refreshed = Gauge(
            f"{PREFIX}_stats_refreshed_timestamp_seconds",
            "When the namespace-level series were last read from Redis (unix time).",
            registry=reg,
        )
        self._namespace = _SnapshotCounters()
        reg.register(self._namespace)

    # -- hooks the worker runtime calls -------------------------------------------------------
    def task_started(self, claim: Claim | None = None) -> None:
        """A task was claimed and is about to run (``claim`` is accepted for future labels)."""
        self._started.inc()

    def task_finished(self, result: Result) -> None:
        """A final result was written: count it by status and observe its latencies."""
        self._finished.get(result.status, self._finished["error"]).inc()
        priority = result.priority if result.priority in self._queue_wait else "normal"
        if result.queue_wait_s is not None:
            self._queue_wait[priority].observe(max(0.0, result.queue_wait_s))
        if result.finished_at and result.submitted_at:
            self._end_to_end[priority].observe(max(0.0, result.finished_at - result.submitted_at))
        if result.solve_s is not None:
            self._solve_child(result.method).observe(max(0.0, result.solve_s))

    def retry(self, reason: str | BaseException = "transient") -> None:
        """An attempt ended in a scheduled retry; ``reason`` is a RETRY_REASONS name or the error."""
        if isinstance(reason, BaseException):
            reason = _retry_reason(reason)
        self._retries.get(reason, self._retries[OTHER]).inc()

    def solver_request(self, endpoint: str, code: str = "OK") -> None:
        """One request to the solver: ``endpoint`` "in" or "res"; ``code`` "OK" or the service's code."""
        self._solver_request_child(endpoint, code).inc()

    def set_in_flight(self, n: int) -> None:
        self._worker_in_flight.set(n)

    def set_slots(self, used: int, limit: int | None) -> None:
        self._slots_used.set(used)
        self._slots_limit.set(math.nan if limit is None else limit)

    def set_paused(self, paused: bool) -> None:
        self._paused.set(1 if paused else 0)

    def set_account_paused(self, paused: bool) -> None:
        self._account_paused.set(1 if paused else 0)

    def account_paused(self, code: str) -> None:
        # Account and busy codes come from the codes table: a handful of series at most.
        self._account_pauses.labels(code if _CODE_RE.match(code) else "OTHER").inc()

    def set_limit_unknown(self, unknown: bool) -> None:
        self.limit_known = not unknown
        self._limit_unknown.set(1 if unknown else 0)

    def report(self, account: str, verdict: str, outcome: str) -> None:
        """A verdict was sent to ``account`` (its ref: name and key fingerprint, never the key), or
        dropped unsent (``expired``)."""
        self._reports_family.labels(
            account if _ACCOUNT_LABEL_RE.match(account) else OTHER,
            verdict if verdict in ("good", "bad") else OTHER,
            outcome if outcome in ("sent", "error", "expired") else OTHER,
        ).inc()

    # -- per account ------------------------------------------------------------------------------
    def account_series(self, account: str) -> None:
        """Create the series of ``account`` (an account name: configuration, never a key)."""
        self._acct_state.setdefault(account, {"in_flight": 0, "paused": 0, "unknown": 1})
        for status in STATUSES:
            self._acct_finished.labels(account, status)
        self._acct_in_flight.labels(account).set(0)
        self._acct_slots_used.labels(account).set(0)
        self._acct_slots_limit.labels(account).set(math.nan)
        self._acct_paused.labels(account).set(0)

    def account_finished(self, account: str, status: str) -> None:
        self._acct_finished.labels(account, status if status in STATUSES else "error").inc()

    def account_in_flight(self, account: str, n: int) -> None:
        self._acct_in_flight.labels(account).set(n)
        self._acct_state[account]["in_flight"] = n
        self.set_in_flight(int(sum(state["in_flight"] for state in self._acct_state.values())))

    def account_slots(self, account: str, used: int, limit: int | None) -> None:
        self._acct_slots_used.labels(account).set(used)
        self._acct_slots_limit.labels(account).set(math.nan if limit is None else limit)

    def account_pause_state(self, account: str, paused: bool) -> None:
        self._acct_paused.labels(account).set(1 if paused else 0)
        self._acct_state[account]["paused"] = 1 if paused else 0
        self.set_account_paused(all(state["paused"] for state in self._acct_state.values()))

    def account_limit_unknown(self, account: str, unknown: bool) -> None:
        """Ready (``/readyz``) as soon as one account can send solves."""
        self._acct_state[account]["unknown"] = 1 if unknown else 0
        self.set_limit_unknown(all(state["unknown"] for state in self._acct_state.values()))

    # -- namespace-level refresh ------------------------------------------------------------------
    def observe_stats(self, stats: Stats, *, now_s: float | None = None) -> None:
        """Set the namespace-level series from one ``Stats`` snapshot."""
        for priority, child in self._queued.items():
            child.set(stats.queued.get(priority, 0))
        self._delayed.set(stats.delayed)
        self._in_flight.set(stats.in_flight)
        self._workers.set(stats.workers)
        self._oldest.set(stats.oldest_queued_age_s or 0.0)
        self._dead.set(stats.dead_letters)
        self._paused.set(1 if stats.paused else 0)
        self.set_slots(stats.solver_slots_used, stats.solver_slots_limit)
        self._namespace.values = {
            "submitted": stats.submitted,
            "completed": stats.completed,
            "failed": stats.failed,
            "dead": stats.dead,
            "cancelled": stats.cancelled,
            "expired": stats.expired,
        }
        self._refreshed.set(time.time() if now_s is None else now_s)

    async def refresh(self, queue: _QueueLike) -> None:
        """Read ``queue.stats()`` once (one round trip) and set the namespace-level series."""
        self.observe_stats(await queue.stats())

    async def run_refresher(self, queue: _QueueLike, *, interval_s: float = 5.0) -> None:
        """Refresh every ``interval_s`` until cancelled; an unreachable Redis only skips a round."""
        while True:
            try:
                await self.refresh(queue)
            except CaptchaQueueError as exc:
                log.debug("metrics refresh skipped: %s", exc)
            except Exception:  # a metrics bug must never stop a worker
                log.exception("metrics refresh failed")
            await asyncio.sleep(interval_s)

    def serve(
        self, port: int, host: str = "127.0.0.1", *, readiness: ReadyCheck | None = None
    ) -> MetricsServer:
        """Serve ``/metrics`` for this registry on ``host:port`` (port 0: a free one)."""
        return serve_metrics(self.registry, port, host, readiness=readiness)

    # -- label children, resolved once --------------------------------------------------------------
    def _solver_request_child(self, endpoint: str, code: str) -> Any:
        endpoint = _endpoint(endpoint)
        code = code if _CODE_RE.match(code) else "OTHER"
        key = (endpoint, code)
        child = self._solver_requests.get(key)
        if child is None:
            if len(self._solver_requests) >= _MAX_CODES:
                key = (endpoint, "OTHER")
                child = self._solver_requests.get(key)
            if child is None:
                child = self._solver_requests_family.labels(*key)
                self._solver_requests[key] = child
        return child

    def _solve_child(self, method: str) -> Any:
        child = self._solve.get(method)
        if child is None:
            if not _METHOD_RE.match(method) or len(self._solve) >= _MAX_METHODS:
                method = OTHER
                child = self._solve.get(method)
            if child is None:
                child = self._solve_family.labels(method)
                self._solve[method] = child
        return child


def _endpoint(endpoint: str) -> str:
    name = endpoint.strip().lower().removeprefix("/").removesuffix(".php")
    return name if name in ENDPOINTS else OTHER


def _retry_reason(exc: BaseException) -> str:
    if isinstance(exc, Unsolvable):
        return "unsolvable"
    if isinstance(exc, SolverBusy):
        return "busy"
    if isinstance(exc, TransientError):
        return "transient"
    return OTHER


class ForwardingEvents:
    """The worker events that one part of a process (a namespace, an account) passes to the process's
    ``WorkerMetrics`` as they are; a subclass adds what it labels or sums on its own."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._m = metrics

    def task_started(self, claim: Claim | None = None) -> None:
        self._m.task_started(claim)

    def retry(self, reason: str | BaseException = "transient") -> None:
        self._m.retry(reason)

    def solver_request(self, endpoint: str, code: str = "OK") -> None:
        self._m.solver_request(endpoint, code)

    def set_paused(self, paused: bool) -> None:
        self._m.set_paused(paused)

    def account_paused(self, code: str) -> None:
        self._m.account_paused(code)

    def report(self, account: str, verdict: str, outcome: str) -> None:
        self._m.report(account, verdict, outcome)


class MetricsServer:
    """The running ``/metrics`` endpoint (a thread, independent of any event loop)."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread, host: str) -> None:
        self._httpd = httpd
        self._thread = thread
        self.host = host
        self.port = int(httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port (waits for the server thread)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5.0)

    async def aclose(self) -> None:
        """``close`` without blocking the event loop."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a log line
        pass


#: What answers /readyz: (ready, JSON body). Called on the server's thread.
ReadyCheck = Callable[[], tuple[bool, bytes]]

_TEXT = ("Content-Type", "text/plain; charset=utf-8")
_JSON = ("Content-Type", "application/json")


def _app(registry: CollectorRegistry, readiness: ReadyCheck | None) -> Callable[..., list[bytes]]:
    """The WSGI app: /metrics (and /), /healthz, /readyz; anything else 404."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path in ("/", "/metrics"):
            return list(metrics_app(environ, start_response))
        if path == "/healthz":
            start_response("200 OK", [_TEXT])
            return [b"ok\n"]
        if path == "/readyz" and readiness is not None:
            ready, body = readiness()
            start_response("200 OK" if ready else "503 Service Unavailable", [_JSON])
            return [body]
        start_response("404 Not Found", [_TEXT])
        return [b"not found: /metrics, /healthz, /readyz\n"]

    return app


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name may resolve anywhere
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).is_loopback


class _Server4(ThreadingWSGIServer):
    address_family = socket.AF_INET


class _Server6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


def serve_metrics(
    registry: CollectorRegistry | WorkerMetrics,
    port: int,
    host: str = "127.0.0.1",
    *,
    readiness: ReadyCheck | None = None,
) -> MetricsServer:
    """Start the ``/metrics`` HTTP endpoint for ``registry`` on ``host:port`` (loopback by default),
    with ``/healthz`` and, given ``readiness``, ``/readyz``. A host that is not loopback is the
    caller's explicit choice; it is logged as a warning, since the endpoint has no authentication.

    prometheus_client's WSGI app in a daemon thread, polled every 50 ms so ``close()`` is prompt.
    """
    if isinstance(registry, WorkerMetrics):
        registry = registry.registry
    server_class = _Server6 if ":" in host else _Server4
    try:
        httpd = make_server(host, port, _app(registry, readiness), server_class, handler_class=_QuietHandler)
    except OSError as exc:
        raise CaptchaQueueError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
    if not is_loopback(host):
        log.warning(
            "metrics endpoint on %s:%d is not loopback-only: /metrics, /healthz and /readyz have no "
            "authentication; let only your scraper's network reach it",
            host,
            int(httpd.server_address[1]),
        )
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="metrics-http", daemon=True
    )
    thread.start()
    return MetricsServer(httpd, thread, host)

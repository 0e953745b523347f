"""Numbers drawn from recent final results (``AdminAPI.recent_results``): throughput, success rate,
solver error codes over time, and latency percentiles. Pure functions, tested on their own."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from ..models import Result

__all__ = [
    "NO_ACCOUNT",
    "LatencyRow",
    "Throughput",
    "account_name",
    "error_series",
    "event_ms",
    "finished_per_account",
    "latency_rows",
    "percentile",
    "throughput",
]

Event = tuple[str, Result]


#: The account column of a result that names none (final errors, results of older workers).
NO_ACCOUNT = "-"


def account_name(result: Result) -> str:
    """The registry name of the account that solved ``result`` (its ``account`` is
    ``<name>/<key fingerprint>``), or NO_ACCOUNT when the result names none."""
    return result.account.partition("/")[0] if result.account else NO_ACCOUNT


def finished_per_account(events: Sequence[Event]) -> dict[str, Counter[str]]:
    """Final results per account name (NO_ACCOUNT for those naming none), counted per status."""
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for _eid, result in events:
        found[account_name(result)][result.status] += 1
    return dict(sorted(found.items()))


def event_ms(event_id: str) -> int:
    """When an event was written (its stream id's ms part)."""
    return int(event_id.partition("-")[0])


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``values``; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Throughput:
    """Final results in a window: how many, per minute, and the share that succeeded."""

    window_s: float
    total: int
    succeeded: int

    @property
    def per_min(self) -> float:
        return self.total * 60 / self.window_s

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.total if self.total else None


def throughput(events: Sequence[Event], now_ms: int, window_s: float) -> Throughput:
    start = now_ms - window_s * 1000
    inside = [r for eid, r in events if event_ms(eid) >= start]
    return Throughput(window_s, len(inside), sum(1 for r in inside if r.ok))


def error_series(
    events: Sequence[Event], now_ms: int, *, window_s: float = 3600.0, bucket_s: float = 300.0
) -> tuple[list[int], dict[tuple[str, str, str], list[int]]]:
    """Final errors per (code, method, account name: ``account_name``) in buckets of ``bucket_s`` over ``window_s``, oldest first:
    (bucket start times in ms, counts per key)."""
    buckets = max(1, int(window_s // bucket_s))
    start = now_ms - buckets * bucket_s * 1000
    starts = [int(start + i * bucket_s * 1000) for i in range(buckets)]
    series: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0] * buckets)
    for eid, result in events:
        if result.status != "error":
            continue
        at = event_ms(eid)
        if at < start:
            continue
        index = min(buckets - 1, int((at - start) // (bucket_s * 1000)))
        series[(result.error_code or "UNKNOWN", result.method, account_name(result))][index] += 1
    return starts, dict(sorted(series.items()))


@dataclass(frozen=True)
class LatencyRow:
    """Latency percentiles (p50, p95, p99, in seconds) of one method at one priority."""

    method: str
    priority: str
    count: int
    queue_wait: tuple[float | None, float | None, float | None]
    solve: tuple[float | None, float | None, float | None]
    end_to_end: tuple[float | None, float | None, float | None]


def _p3(values: list[float]) -> tuple[float | None, float | None, float | None]:
    return percentile(values, 50), percentile(values, 95), percentile(values, 99)


def latency_rows(events: Sequence[Event]) -> list[LatencyRow]:
    """Per (method, priority): queue wait (submit to first claim), solve (first claim to the end) and
    end to end (submit to the result), over the successful results given."""
    groups: dict[tuple[str, str], list[Result]] = defaultdict(list)
    for _eid, result in events:
        if result.ok:
            groups[(result.method, result.priority)].append(result)
    rows = []
    for (method, priority), results in sorted(groups.items()):
        rows.append(
            LatencyRow(
                method=method,
                priority=priority,
                count=len(results),
                queue_wait=_p3([r.queue_wait_s for r in results if r.queue_wait_s is not None]),
                solve=_p3([r.solve_s for r in results if r.solve_s is not None]),
                end_to_end=_p3([max(0.0, r.finished_at - r.submitted_at) for r in results]),
            )
        )
    return rows


def status_counts(events: Sequence[Event]) -> Counter[str]:
    return Counter(r.status for _eid, r in events)

"""What a demo run measured: ``DemoReport``, filled by ``run`` and shown by ``view``."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..models import Result

__all__ = ["DemoReport"]


@dataclass
class DemoReport:
    submitted: int = 0
    finished: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_priority: dict[str, list[Result]] = field(default_factory=lambda: defaultdict(list))
    retries: int = 0
    dead_letters: int = 0
    elapsed_s: float = 0.0
    solver_submits: int | None = None
    solver_polls: int | None = None
    max_in_flight: int | None = None
    solver_limit: int | None = None
    kills: int = 0
    by_account: Counter[str] = field(default_factory=Counter)  # success results per account name
    failovers: int = 0

    @property
    def lost(self) -> int:
        return self.submitted - self.finished

    def to_dict(self) -> dict[str, Any]:
        latency: dict[str, Any] = {}
        for priority, results in self.by_priority.items():
            latency[priority] = {
                "count": len(results),
                "queue_wait_s": _percentiles([r.queue_wait_s for r in results]),
                "solve_s": _percentiles([r.solve_s for r in results]),
                "end_to_end_s": _percentiles([r.finished_at - r.submitted_at for r in results]),
            }
        return {
            "submitted": self.submitted,
            "finished": self.finished,
            "lost": self.lost,
            "by_status": dict(self.by_status),
            "retries": self.retries,
            "dead_letters": self.dead_letters,
            "elapsed_s": round(self.elapsed_s, 3),
            "throughput_per_s": round(self.finished / self.elapsed_s, 2) if self.elapsed_s else 0.0,
            "solver_submits": self.solver_submits,
            "solver_polls": self.solver_polls,
            "solver_calls_per_task": self.solver_calls_per_task,
            "max_solver_in_flight": self.max_in_flight,
            "solver_limit": self.solver_limit,
            "worker_kills": self.kills,
            "by_account": dict(self.by_account),
            "failovers": self.failovers,
            "latency": latency,
        }

    @property
    def solver_calls_per_task(self) -> float | None:
        if self.solver_submits is None or self.solver_polls is None or not self.finished:
            return None
        return round((self.solver_submits + self.solver_polls) / self.finished, 2)


def _percentiles(values: list[float | None]) -> dict[str, float | None]:
    data = sorted(v for v in values if v is not None)
    if not data:
        return {"p50": None, "p95": None, "p99": None}

    def pick(q: float) -> float:
        return round(data[min(len(data) - 1, int(q * len(data)))], 3)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99)}

"""What the demo shows: a live progress table while it runs, and the final report."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..models import PRIORITIES, Result, Stats
from .report import DemoReport

__all__ = ["ProgressView", "render_report"]


class ProgressView:
    """Queued / in flight / done / failed per priority, and throughput, refreshed live."""

    def __init__(self, submitted: Counter[str], *, enabled: bool = True) -> None:
        self.submitted = submitted
        self.done: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.stats: Stats | None = None
        self.finished = 0
        self.elapsed_s = 0.0
        self.notes: list[str] = []
        self.enabled = enabled
        self.console = Console(stderr=True)
        self._live: Live | None = None

    def __enter__(self) -> ProgressView:
        if self.enabled:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)
            self._live = None

    def record(self, result: Result) -> None:
        if result.status == "success":
            self.done[result.priority] += 1
        else:
            self.failed[result.priority] += 1

    def note(self, text: str) -> None:
        self.notes.append(text)
        if self._live is None and self.enabled:
            self.console.print(text)
        self._refresh()

    def update_stats(self, stats: Stats, finished: int, elapsed_s: float) -> None:
        self.stats, self.finished, self.elapsed_s = stats, finished, elapsed_s
        self._refresh()

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Group:
        table = Table(title="captcha-queue demo", expand=False)
        for column in ("priority", "submitted", "queued", "in flight", "done", "failed"):
            table.add_column(column, justify="right" if column != "priority" else "left")
        queued = self.stats.queued if self.stats else {}
        for priority in PRIORITIES:
            finished = self.done[priority] + self.failed[priority]
            waiting = queued.get(priority, 0)
            in_flight = max(0, self.submitted[priority] - finished - waiting)
            table.add_row(
                priority,
                str(self.submitted[priority]),
                str(waiting),
                str(in_flight),
                str(self.done[priority]),
                str(self.failed[priority]),
            )
        rate = self.finished / self.elapsed_s if self.elapsed_s else 0.0
        footer = f"{self.finished} finished in {self.elapsed_s:.1f} s, {rate:.1f} tasks/s"
        if self.stats is not None:
            footer += f"; workers {self.stats.workers}; solver slots {self.stats.solver_slots_used}"
            if self.stats.solver_slots_limit is not None:
                footer += f"/{self.stats.solver_slots_limit}"
            if self.stats.paused:
                footer += f"; PAUSED: {self.stats.paused}"
        parts: list[Any] = [table, Text(footer)]
        parts += [Text(n, style="yellow") for n in self.notes[-3:]]
        return Group(*parts)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_report(report: DemoReport, console: Console) -> None:
    data = report.to_dict()
    console.print()
    console.print(
        f"[bold]Throughput[/bold] {data['throughput_per_s']} tasks/s "
        f"({report.finished} tasks in {data['elapsed_s']} s)"
    )
    table = Table(title="latency per priority, seconds (p50 / p95 / p99)")
    for column in ("priority", "tasks", "queue wait", "solve", "end to end"):
        table.add_column(column)
    for priority in PRIORITIES:
        row = data["latency"].get(priority)
        if not row:
            continue
        cells = [
            " / ".join(_fmt(row[name][p]) for p in ("p50", "p95", "p99"))
            for name in ("queue_wait_s", "solve_s", "end_to_end_s")
        ]
        table.add_row(priority, str(row["count"]), *cells)
    console.print(table)
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(report.by_status.items()))
    console.print(f"statuses: {statuses or '-'}")
    calls = data["solver_calls_per_task"]
    if calls is not None:
        console.print(
            f"solver calls per task: {calls} ({report.solver_submits} in.php, {report.solver_polls} res.php)"
        )
    if report.max_in_flight is not None:
        limit = f" (limit {report.solver_limit})" if report.solver_limit else ""
        console.print(f"max solver tasks in flight at once: {report.max_in_flight}{limit}")
    console.print(
        f"retries: {report.retries}; dead letters: {report.dead_letters}; worker kills: {report.kills}"
    )
    if report.by_account:
        solved = ", ".join(f"{name} {n}" for name, n in sorted(report.by_account.items()))
        console.print(f"solved per account: {solved}; failovers: {report.failovers}")
    style = "bold green" if report.lost == 0 else "bold red"
    console.print(
        f"[{style}]submitted {report.submitted}, finished {report.finished}, lost {report.lost}[/{style}]"
    )

"""The bench's outputs: the console table, the targets check, ``bench/results/<date>.md`` and the chart."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .harness import RunResult

__all__ = ["Target", "check_targets", "draw_chart", "format_table", "write_markdown"]

#: The columns shown per workload: (metric, header).
COLUMNS: Mapping[str, Sequence[tuple[str, str]]] = {
    "W1": [
        ("throughput_per_s", "tasks/s"),
        ("submit_per_s", "submit/s (in run)"),
        ("redis_cmds_per_task", "Redis cmds/task"),
        ("lua_calls_per_task", "of which Lua calls"),
        ("peak_rss_mb", "peak RSS MB"),
        ("elapsed_s", "elapsed s"),
    ],
    "W1 submit": [("submit_per_s", "submit-only tasks/s")],
    "W2": [
        ("throughput_per_s", "tasks/s"),
        ("ideal_per_s", "ideal/s"),
        ("pct_of_ideal", "% ideal"),
        ("inphp_per_task", "in.php/task"),
        ("resphp_per_task", "res.php/task"),
        ("redis_cmds_per_task", "Redis cmds/task"),
        ("peak_rss_mb", "peak RSS MB/proc"),
        ("max_in_flight", "max in flight"),
    ],
    "W2 latency": [
        ("rate_per_s", "offered tasks/s"),
        ("e2e_p50_ms", "e2e p50 ms"),
        ("overhead_p50_ms", "overhead p50 ms"),
        ("overhead_p99_ms", "overhead p99 ms"),
        ("pickup_p99_ms", "submit->claim p99"),
        ("worker_p99_ms", "claim->done minus L p99"),
        ("notify_p99_ms", "done->wake p99"),
    ],
    "W3": [("samples", "samples"), ("wake_p50_ms", "wake p50 ms"), ("wake_p99_ms", "wake p99 ms")],
    "W1 stall": [
        ("rounds", "rounds"),
        ("stalled_rounds", "stalled rounds"),
        ("max_freeze_s", "longest freeze s"),
        ("best_s", "best round s"),
        ("worst_s", "worst round s"),
    ],
    "GW": [
        ("inphp_per_s", "in.php/s"),
        ("resphp_per_s", "res.php/s"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("errors", "errors"),
    ],
    "GW W2": [
        ("throughput_per_s", "tasks/s"),
        ("ideal_per_s", "ideal/s"),
        ("pct_of_ideal", "% ideal"),
        ("resphp_per_task", "res.php/task"),
        ("e2e_p50_ms", "e2e p50 ms"),
        ("e2e_p99_ms", "e2e p99 ms"),
        ("errors", "errors"),
    ],
    "DASH": [
        ("clients", "SSE clients"),
        ("redis_readers", "Redis readers"),
        ("deliveries", "deliveries"),
        ("lost", "lost"),
        ("fanout_p50_ms", "fan-out p50 ms"),
        ("fanout_p99_ms", "p99 ms"),
        ("fanout_max_ms", "max ms"),
    ],
    "W4": [
        ("throughput_per_s", "tasks/s"),
        ("ideal_per_s", "ideal/s"),
        ("pct_of_ideal", "% ideal"),
        ("resphp_per_task", "res.php/task"),
        ("peak_rss_mb", "peak RSS MB/proc"),
        ("max_in_flight", "max in flight"),
    ],
}
WORKLOAD_TITLES = {
    "W1": "W1 queue overhead (instant solver, end to end)",
    "W1 submit": "W1 submit-only rate (no worker running)",
    "W2": "W2 solver workload (HTTP simulator, fixed solve time L)",
    "W2 latency": "W2 queue overhead (open loop at half the ideal rate: end to end minus L)",
    "W3": "W3 notification latency (result written -> waiting producer wakes)",
    "W4": "W4 scale (captcha-queue, W2 with more processes and more in flight)",
    "W1 stall": "W1 stall regression (results must never stand still for 5 s with work left)",
    "GW": "GW gateway, one process (load from separate processes)",
    "GW W2": "GW W2 solver workload, the producers HTTP clients polling through one gateway",
    "DASH": "Dashboard event feed (one Redis reader fanned out over SSE: result written -> browser)",
}


@dataclass
class Target:
    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured
    reason: str = ""
    profile: str = ""
    where: str = ""  # the workload row the figure comes from


@dataclass
class Meta:
    date: str
    command: str
    machine: Mapping[str, Any]
    versions: Mapping[str, str]
    settings: Mapping[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if value < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _rows(results: Sequence[RunResult], workload: str) -> list[RunResult]:
    return [r for r in results if r.workload == workload]


def _table(results: Sequence[RunResult], workload: str, markdown: bool) -> list[str]:
    rows = _rows(results, workload)
    if not rows:
        return []
    columns = COLUMNS.get(workload, [])
    header = ["system", "config", *[title for _, title in columns]]
    body: list[list[str]] = []
    for r in rows:
        if r.error:
            body.append([r.system, r.config, f"failed: {r.error}"] + [""] * (len(columns) - 1))
        else:
            body.append([r.system, r.config, *[_fmt(r.metrics.get(name)) for name, _ in columns]])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return lines
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    widths = [min(w, 60) for w in widths]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c[:60].ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return lines


def format_table(results: Sequence[RunResult], targets: Sequence[Target] = ()) -> str:
    """The console summary: one table per workload, then the targets."""
    out: list[str] = []
    for workload, title in WORKLOAD_TITLES.items():
        lines = _table(results, workload, markdown=False)
        if lines:
            out += ["", title, *lines]
    if targets:
        out += ["", "Targets"]
        for t in targets:
            mark = {True: "met", False: "MISSED", None: "not measured"}[t.met]
            out.append(f"  [{mark:>12}] {t.name}: {t.measured} (target {t.goal})")
    return "\n".join(out)


# -- targets ---------------------------------------------------------------------------------------


def _find(
    results: Sequence[RunResult], workload: str, system: str, config: str | None = None
) -> RunResult | None:
    for r in results:
        matches = config is None or r.config.startswith(config)
        if r.workload == workload and r.system == system and not r.error and matches:
            return r
    return None


def check_targets(
    results: Sequence[RunResult], poll_bound: int, rss_in_flight: int, waiters: int = 1000
) -> list[Target]:
    """Each target of the issue, against the figures measured in this run."""
    targets: list[Target] = []
    w2 = _find(results, "W2", "captcha-queue")
    pct = w2.get("pct_of_ideal") if w2 else None
    targets.append(
        Target(
            "W2 throughput vs ideal",
            ">= 95 % of min(limit, concurrency) / L",
            f"{_fmt(pct)} % ({_fmt(w2.get('throughput_per_s'))} of {_fmt(w2.get('ideal_per_s'))} tasks/s, "
            "first submit to last result)"
            if w2
            else "no figure",
            None if pct is None else pct >= 95.0,
            where=f"W2 captcha-queue {w2.config}" if w2 else "",
        )
    )
    targets.append(_vs_naive(results))
    targets.append(_vs_peers(results))
    lat = _find(results, "W2 latency", "captcha-queue")
    p99 = lat.get("overhead_p99_ms") if lat else None
    targets.append(
        Target(
            "Queue overhead p99",
            "<= 20 ms (end to end minus solve time)",
            (
                f"{_fmt(p99)} ms (p50 {_fmt(lat.get('overhead_p50_ms'))} ms); p99 by stage: submit->claim "
                f"{_fmt(lat.get('pickup_p99_ms'))} ms, claim->done minus L {_fmt(lat.get('worker_p99_ms'))} "
                f"ms, done->wake {_fmt(lat.get('notify_p99_ms'))} ms"
            )
            if lat
            else "no figure",
            None if p99 is None else p99 <= 20.0,
            where="W2 latency captcha-queue",
        )
    )
    polls = w2.get("resphp_per_task") if w2 else None
    targets.append(
        Target(
            "res.php calls per task",
            f"<= ceil(L / interval) + 1 = {poll_bound}",
            _fmt(polls),
            None if polls is None else polls <= poll_bound,
            where="W2 captcha-queue",
        )
    )
    for label in ("1 waiter", f"{waiters} waiters"):
        w3 = _find(results, "W3", "captcha-queue", label)
        value = w3.get("wake_p99_ms") if w3 else None
        targets.append(
            Target(
                f"W3 wake-up p99, {label}",
                "<= 5 ms",
                f"{_fmt(value)} ms (p50 {_fmt(w3.get('wake_p50_ms'))} ms)" if w3 else "no figure",
                None if value is None else value <= 5.0,
                where=f"W3 captcha-queue {label}",
            )
        )
    targets += _cost_targets(results)
    stall = _find(results, "W1 stall", "captcha-queue")
    stalled = stall.get("stalled_rounds") if stall else None
    targets.append(
        Target(
            "W1 pattern never stalls",
            "no round with results standing still >= 5 s",
            f"{_fmt(stalled)} of {_fmt(stall.get('rounds'))} rounds stalled (longest freeze "
            f"{_fmt(stall.get('max_freeze_s'))} s)"
            if stall
            else "no figure",
            None if stalled is None else stalled == 0,
            where="W1 stall captcha-queue",
        )
    )
    rss = w2.get("peak_rss_mb") if w2 else None
    held = w2.get("max_in_flight") if w2 else None
    targets.append(
        Target(
            "Peak RSS per worker process",
            f"<= 150 MB at {rss_in_flight:,} in flight",
            f"{_fmt(rss)} MB with {_fmt(held)} in flight at the solver" if w2 else "no figure",
            None if rss is None else rss <= 150.0,
            where="W2 captcha-queue",
        )
    )
    targets += _gateway_targets(results)
    return targets


def _gateway_targets(results: Sequence[RunResult]) -> list[Target]:
    """The gateway's three (bench/gateway.py): none when GW did not run."""
    found = {
        name: next((r.get(name) for r in results if r.workload == "GW" and r.get(name) is not None), None)
        for name in ("inphp_per_s", "resphp_per_s", "p99_ms")
    }
    if all(v is None for v in found.values()):
        return []
    goals: list[tuple[str, str, str, float, bool]] = [
        ("Gateway res.php polls/s, one process", "resphp_per_s", ">= 5,000/s", 5000.0, True),
        ("Gateway in.php/s, one process", "inphp_per_s", ">= 2,000/s", 2000.0, True),
        ("Gateway poll p99 at the paced rate", "p99_ms", "<= 5 ms", 5.0, False),
    ]
    targets = []
    for name, metric, goal, bound, at_least in goals:
        value = found[metric]
        met = None if value is None else (value >= bound if at_least else value <= bound)
        targets.append(Target(name, goal, _fmt(value), met, where="GW"))
    return targets


def _cost_targets(results: Sequence[RunResult]) -> list[Target]:
    """The per-task costs: Redis commands (exact counts, whatever the load), one awaited submit's
    rate, the worker's CPU per task (python -m bench.micro measures the same, bench.compare two
    revisions)."""
    targets: list[Target] = []
    for workload in ("W1", "W2"):
        row = _find(results, workload, "captcha-queue")
        cmds = row.get("redis_cmds_per_task") if row else None
        targets.append(
            Target(
                f"{workload} Redis commands per task",
                "<= 20 (every command Redis ran, Lua's included)",
                _fmt(cmds),
                None if cmds is None else cmds <= 20.0,
                where=f"{workload} captcha-queue {row.config}" if row else "",
            )
        )
    single = _find(results, "W1 submit", "captcha-queue", "submit, one awaited")
    rate = single.get("submit_per_s") if single else None
    targets.append(
        Target(
            "Single awaited submit()",
            ">= 4,000 per second from one process",
            f"{_fmt(rate)} per second" if single else "no figure",
            None if rate is None else rate >= 4000.0,
            where="W1 submit captcha-queue",
        )
    )
    w2 = _find(results, "W2", "captcha-queue")
    cpu = w2.get("worker_cpu_ms_per_task") if w2 else None
    targets.append(
        Target(
            "W2 worker CPU per task",
            "<= 1.2 ms (user + system of the worker processes / tasks finished)",
            f"{_fmt(cpu)} ms" if w2 else "no figure",
            None if cpu is None else cpu <= 1.2,
            where="W2 captcha-queue",
        )
    )
    return targets


def _vs_naive(results: Sequence[RunResult]) -> Target:
    naive = _find(results, "W2", "naive")
    goal = ">= 100x the naive design at equal process count"
    if naive is None or not naive.get("throughput_per_s"):
        return Target("W2 vs the naive design", goal, "no figure", None)
    naive_procs = int(naive.get("processes") or 4)
    per_proc = (naive.get("throughput_per_s") or 0.0) / naive_procs
    same = _find(results, "W4", "captcha-queue", f"{naive_procs} procs")
    ours = same or _find(results, "W2", "captcha-queue")
    if ours is None or not ours.get("throughput_per_s"):
        return Target("W2 vs the naive design", goal, "no captcha-queue figure", None)
    procs = naive_procs if same is not None else int(ours.config.split()[0])
    ratio = (ours.get("throughput_per_s") or 0.0) / (per_proc * procs)
    measured = (
        f"{ratio:,.0f}x ({_fmt(ours.get('throughput_per_s'))} vs {_fmt(per_proc * procs)} tasks/s, "
        f"{procs} process{'es' if procs > 1 else ''} each)"
    )
    return Target(
        "W2 vs the naive design", goal, measured, ratio >= 100.0, where=f"{ours.workload} {ours.config}"
    )


def _vs_peers(results: Sequence[RunResult]) -> Target:
    goal = ">= 2x the best peer (arq, SAQ) at the same process count"
    parts: list[str] = []
    ratios: list[float] = []
    for r in _rows(results, "W1"):
        if r.system != "captcha-queue" or r.error:
            continue
        peers = [p for p in _rows(results, "W1") if p.system in ("arq", "saq") and p.config == r.config]
        best = max(
            (p for p in peers if p.get("throughput_per_s")),
            key=lambda p: p.get("throughput_per_s") or 0,
            default=None,
        )
        if best is None:
            continue
        ratio = (r.get("throughput_per_s") or 0.0) / (best.get("throughput_per_s") or 1.0)
        ratios.append(ratio)
        parts.append(f"{r.config}: {ratio:.2f}x {best.system}")
    if not ratios:
        return Target("W1 vs the best peer", goal, "no figure", None)
    return Target("W1 vs the best peer", goal, "; ".join(parts), min(ratios) >= 2.0, where="W1 captcha-queue")


# -- the results file ------------------------------------------------------------------------------


def write_markdown(path: Path, meta: Meta, results: Sequence[RunResult], targets: Sequence[Target]) -> None:
    m = meta.machine
    lines = [
        f"# captcha-queue benchmark, {meta.date}",
        "",
        f"Command: `{meta.command}` (took {meta.duration_s / 60:.1f} min)",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB memory, "
        f"kernel {m.get('kernel')}, {m.get('os')}",
        "",
        "Versions: " + ", ".join(f"{name} {version}" for name, version in meta.versions.items()),
        "",
        "Every system ran in this one run, on the same private Redis and the same simulator, one after the "
        "other; ratios between rows are the figures to trust on a shared machine.",
        "",
        "## Targets",
        "",
        "| target | goal | measured | met |",
        "|---|---|---|---|",
    ]
    for t in targets:
        mark = {True: "yes", False: "**no**", None: "not measured"}[t.met]
        lines.append(f"| {t.name} | {t.goal} | {t.measured} | {mark} |")
    missed = [t for t in targets if t.met is False]
    if missed:
        lines += ["", "### Missed targets: the reason measured", ""]
        for t in missed:
            lines += [f"**{t.name}** ({t.measured}; target {t.goal}). {t.reason}".rstrip(), ""]
            if t.profile:
                lines += ["```", t.profile.rstrip(), "```", ""]
    lines += ["", "## Settings", ""]
    lines += [f"- **{name}**: {text}" for name, text in meta.settings.items()]
    for workload, title in WORKLOAD_TITLES.items():
        table = _table(results, workload, markdown=True)
        if table:
            lines += ["", f"## {title}", "", *table]
            notes = [f"- {r.system} {r.config}: {n}" for r in _rows(results, workload) for n in r.notes]
            if notes:
                lines += ["", *notes]
    if meta.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in meta.notes]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- the chart -------------------------------------------------------------------------------------

SYSTEM_COLORS = {"captcha-queue": "#1f77b4", "naive": "#7f7f7f", "arq": "#ff7f0e", "saq": "#2ca02c"}


_CHARTED = ("W1", "W2", "W2 latency", "W3")


def draw_chart(path: Path, results: Sequence[RunResult]) -> bool:
    """Throughput (W1, W2) and latency (W2 overhead, W3 wake-up) per system, log scales. False (and no
    file) when the run has none of those figures (``--only GW,DASH``: log scales need a value > 0)."""
    if not any(r.workload in _CHARTED and r.error is None and r.metrics for r in results):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    _bars(
        left,
        results,
        [("W1", "throughput_per_s"), ("W2", "throughput_per_s")],
        "Throughput (tasks/s, log scale)",
    )
    _bars(
        right,
        results,
        [
            ("W2 latency", "overhead_p50_ms"),
            ("W2 latency", "overhead_p99_ms"),
            ("W3", "wake_p50_ms"),
            ("W3", "wake_p99_ms"),
        ],
        "Latency (ms, log scale; lower is better)",
    )
    fig.suptitle("captcha-queue vs the naive design, arq and SAQ (same Redis, same simulator, one run)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _group(workload: str, config: str, metric: str) -> str:
    """The x-axis group of a bar: configs are compared across systems only where they match (W1, W3)."""
    label = workload.replace(" latency", "\noverhead")
    if workload in ("W1", "W3"):
        label += f"\n{config}"
    return f"{label}\n{_metric_label(metric)}".strip()


def _bars(ax: Any, results: Sequence[RunResult], series: Sequence[tuple[str, str]], title: str) -> None:
    groups: list[str] = []
    cells: dict[tuple[str, str], float] = {}
    for workload, metric in series:
        for r in _rows(results, workload):
            group = _group(workload, r.config, metric)
            if group not in groups:
                groups.append(group)
            value = r.get(metric)
            if value is not None and value > 0:
                cells[(r.system, group)] = value
    systems = [s for s in SYSTEM_COLORS if any(r.system == s for r in results)]
    width = 0.8 / max(1, len(systems))
    for i, system in enumerate(systems):
        xs = [g + i * width - 0.4 + width / 2 for g in range(len(groups))]
        ys = [cells.get((system, group), math.nan) for group in groups]
        bars = ax.bar(xs, ys, width, label=system, color=SYSTEM_COLORS[system])
        labels = ["" if math.isnan(y) else _fmt(y) for y in ys]
        ax.bar_label(bars, labels=labels, fontsize=6, rotation=90, padding=2)
    ax.set_yscale("log")
    ax.margins(y=0.15)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=7)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _metric_label(metric: str) -> str:
    for token in ("p50", "p99"):
        if token in metric:
            return token
    return ""

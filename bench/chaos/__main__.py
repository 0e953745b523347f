"""``python -m bench.chaos`` (``make chaos``): run the chaos scenarios and write the report.

    python -m bench.chaos                 # every scenario at full size
    python -m bench.chaos --quick         # reduced sizes (a few minutes)
    python -m bench.chaos --only crash_storm,zombie --keep-logs /tmp/chaos-logs

The report table goes to ``bench/results/chaos-<date>.md`` (the machine, the versions, the exact
command, one row per scenario with the figure it showed) and a JSON file with every detail beside it.
The exit status is 0 only if every scenario passed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .scenarios import SCENARIOS, Row

RESULTS = Path(__file__).resolve().parent.parent / "results"
SCENARIO_TIMEOUT_S = 900.0


def _versions() -> str:
    import redis

    from captcha_queue.store.server import find_server_binary

    try:
        import subprocess

        server = subprocess.run(
            [find_server_binary(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.split(" sha=")[0]
    except Exception as exc:  # the report says what it could not find out
        server = f"unknown ({exc})"
    return f"Python {platform.python_version()}, redis-py {redis.__version__}, {server}"


def _machine() -> str:
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs, {platform.machine()}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[Row], *, command: str, started: datetime.datetime, elapsed_s: float) -> str:
    passed = sum(1 for r in rows if r.passed)
    held = [r for r in rows if r.limit]
    limit_ok = sum(1 for r in held if _within(r.limit))
    lines = [
        f"# Chaos report, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"- Command: `{command}`",
        f"- Machine: {_machine()}",
        f"- Versions: {_versions()}",
        f"- Duration: {elapsed_s / 60:.1f} min; {passed}/{len(rows)} scenarios passed",
        f"- Fleet limit (the solver's most tasks in flight <= N, measured by the simulator): held in "
        f"{limit_ok}/{len(held)} runs; a run that exceeds it fails",
        "- Canary API key: searched in every worker and simulator log, every Redis key and value "
        "(SCAN, type-aware reads, DUMP with rdbcompression off) and every worker's /metrics",
        "",
        "| # | Scenario | Size | Figure | Max in flight / N | Canary key | Time | Result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = "pass" if r.passed else "FAIL: " + "; ".join(r.violations)
        lines.append(
            f"| {r.number} | {_cell(r.name)} | {_cell(r.size)} | {_cell(r.figure)} | {_cell(r.limit)} "
            f"| {_cell(r.secrets)} | {r.elapsed_s:.0f} s | {_cell(verdict)} |"
        )
    lines += [
        "",
        "Details (per-task checks, time to a final state, faults injected, events) are in the JSON file",
        "of the same name.",
        "",
    ]
    return "\n".join(lines)


def _within(limit: str) -> bool:
    try:
        used, cap = (int(p.strip().split()[0]) for p in limit.split("/")[:2])
    except ValueError:
        return False
    return used <= cap


def _dump_tasks() -> None:
    """SIGUSR1: print where every asyncio task of this run is waiting (for a run that hangs)."""
    for task in asyncio.all_tasks():
        print(f"--- task {task.get_name()}", file=sys.stderr)
        task.print_stack(limit=15, file=sys.stderr)
    sys.stderr.flush()


async def run(names: list[str], quick: bool, budget_s: float) -> list[Row]:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)
    rows: list[Row] = []
    deadline = time.monotonic() + budget_s
    for name in names:
        fn, full, reduced = SCENARIOS[name]
        kwargs = reduced if quick else full
        if time.monotonic() > deadline:
            rows.append(Row(0, name, "", "skipped: the time budget was used up", False, ["skipped"]))
            continue
        print(f"-- {name} {kwargs or ''}", flush=True)
        try:
            # A scenario that hangs becomes a failed row (with every task's stack on stderr).
            row = await asyncio.wait_for(fn(**kwargs), timeout=SCENARIO_TIMEOUT_S)
        except TimeoutError:
            _dump_tasks()
            row = Row(0, name, "", f"hung for {SCENARIO_TIMEOUT_S:.0f} s", False, ["hung"])
        except Exception as exc:  # a scenario that cannot run is a failed row, not a lost report
            traceback.print_exc()  # where it broke, for the operator (the row keeps one line)
            row = Row(0, name, "", f"could not run: {type(exc).__name__}: {exc}", False, [repr(exc)])
        print(f"   {'pass' if row.passed else 'FAIL'}: {row.figure}", flush=True)
        for violation in row.violations:
            print(f"   - {violation}", flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios: {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the report goes")
    parser.add_argument("--keep-logs", type=Path, default=None, help="keep every process log here")
    parser.add_argument("--budget-min", type=float, default=25.0, help="skip what would start after this")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    if args.keep_logs is not None:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
        os.environ["CAPTCHA_CHAOS_LOG_DIR"] = str(args.keep_logs)
    started = datetime.datetime.now(datetime.UTC)
    clock = time.monotonic()
    rows = asyncio.run(run(names, args.quick, args.budget_min * 60))
    elapsed_s = time.monotonic() - clock
    command = "python -m bench.chaos " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"chaos-{started:%Y-%m-%d}" + ("-quick" if args.quick else "")
    report = render(rows, command=command.strip(), started=started, elapsed_s=elapsed_s)
    (args.out / f"{stem}.md").write_text(report)
    details: list[dict[str, Any]] = [vars(r) for r in rows]
    (args.out / f"{stem}.json").write_text(json.dumps(details, indent=1, default=str) + "\n")
    print(report)
    print(f"written: {args.out / (stem + '.md')}")
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""``captcha-queue demo``: the whole system in one command, ending with a report."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import click
import msgspec
from rich.console import Console

from .app import FiniteFloat, cli


@cli.command("demo")
@click.option("--tasks", default=2000, show_default=True, help="How many tasks to submit.")
@click.option(
    "--time-scale",
    type=FiniteFloat(),
    default=0.05,
    show_default=True,
    help="Scale of solve times and poll intervals.",
)
@click.option("--processes", default=2, show_default=True, help="Worker processes.")
@click.option("--concurrency", default=500, show_default=True, help="Tasks in flight per worker process.")
@click.option("--chaos", is_flag=True, help="kill -9 a worker a third of the way through, then restart it.")
@click.option("--real", is_flag=True, help="Use CAPTCHAAI_KEY against the real service, not the simulator.")
@click.option("--threads", default=40, show_default=True, help="Simulator: the account's thread limit.")
@click.option(
    "--lease-s",
    type=FiniteFloat(),
    default=5.0,
    show_default=True,
    help="Worker lease (short, so --chaos recovers fast).",
)
@click.option("--seed", default=7, show_default=True, help="Workload and simulator seed.")
@click.option(
    "--timeout", "timeout_s", type=FiniteFloat(), default=600.0, show_default=True, help="Give up after this."
)
@click.option(
    "--report-json", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report here."
)
@click.option(
    "--accounts",
    type=click.IntRange(min=1, max=9),
    default=1,
    show_default=True,
    help="Registered simulator accounts served by every worker; 2 or more: the first one's key is "
    "revoked a third of the way through and its tasks fail over to the next.",
)
@click.option("--quiet", is_flag=True, help="No live table (the report is still printed).")
def demo_cmd(
    tasks: int,
    time_scale: float,
    processes: int,
    concurrency: int,
    chaos: bool,
    real: bool,
    threads: int,
    lease_s: float,
    seed: int,
    timeout_s: float,
    report_json: Path | None,
    accounts: int,
    quiet: bool,
) -> None:
    """Run Redis, the solver simulator and worker processes on a mixed workload, then report."""
    from ..demo.run import DemoConfig, run_demo
    from ..demo.view import render_report
    from ..store.server import redact_url, resolved_redis, state_dir

    if tasks < 1 or processes < 1 or concurrency < 1 or time_scale <= 0:
        raise click.BadParameter("--tasks, --processes, --concurrency and --time-scale must be positive")
    if accounts > 1 and real:
        raise click.BadParameter("--accounts runs simulator accounts: it cannot be combined with --real")
    console = Console(stderr=False, width=max(110, Console().width))
    with resolved_redis(password_dir=state_dir()) as (url, server):
        if server is not None:
            where = f"a private server; password in {server.password_file}"
            console.print(f"Redis: {server.public_url} ({where})", soft_wrap=True, markup=False)
        else:
            console.print(f"Redis: {redact_url(url)} (REDIS_URL)", soft_wrap=True, markup=False)
        cfg = DemoConfig(
            redis_url=url,
            tasks=tasks,
            time_scale=time_scale,
            processes=processes,
            concurrency=concurrency,
            chaos=chaos,
            real=real,
            threads=threads,
            lease_s=lease_s,
            seed=seed,
            timeout_s=timeout_s,
            namespace=os.environ.get("CAPTCHA_QUEUE_NAMESPACE") or f"demo-{uuid.uuid4().hex[:8]}",
            solver_url=os.environ.get("CAPTCHAAI_URL") if real else None,
            api_key=os.environ.get("CAPTCHAAI_KEY") if real else None,
            accounts=accounts,
        )
        report = asyncio.run(run_demo(cfg, live=not quiet and sys.stderr.isatty()))
    render_report(report, console)
    if report_json is not None:
        report_json.write_bytes(msgspec.json.format(msgspec.json.encode(report.to_dict())))
    sys.exit(0 if report.lost == 0 else 1)

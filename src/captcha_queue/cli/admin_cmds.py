"""Operator commands: ``stats``, ``workers``, ``account``, ``pause``/``resume``, ``dlq ...``, ``listen``."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click
import msgspec
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape as esc
from rich.table import Table

from ..errors import CaptchaQueueError, TaskNotFound
from ..models import PRIORITIES, AccountStats, DeadLetter, Pause, PauseState, Result, Stats, WorkerEntry
from ..queue._waiting import check_event_id
from ..store.keys import validate_account
from . import doctor_cmd
from .app import FiniteFloat, checked, cli, connection_options, echo_json, get_settings, open_queue, run
from .namespaces_stats import namespace_list, namespaces_stats

if TYPE_CHECKING:
    from ..queue._producer import AsyncCaptchaQueue

__all__ = ["account_stats_table", "stats_table"]

_PREVIEW_CHARS = 48


def _console() -> Console:
    # Created per command so it writes to whatever sys.stdout is now (click's test runner swaps it).
    # emoji off: worker ids like "host:100:abc" must not turn into pictures. Data goes through esc().
    console = Console(highlight=False, emoji=False)
    if not console.is_terminal:  # piped or captured: do not squeeze ids into rich's default 80 columns
        console = Console(highlight=False, emoji=False, width=max(console.width, 140))
    return console


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _clock(epoch_s: float | None) -> str:
    if not epoch_s:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_s))


def _preview(text: str, limit: int = _PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- stats ------------------------------------------------------------------------------------------


def stats_table(stats: Stats, namespace: str, pauses: PauseState | None = None) -> Table:
    """The one table ``stats`` prints (and ``--watch`` keeps redrawing)."""
    table = Table(title=f"captcha-queue · {namespace}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    for priority in PRIORITIES:
        table.add_row(f"queued {priority}", str(stats.queued.get(priority, 0)))
    table.add_row("delayed (retry)", str(stats.delayed))
    table.add_row("in flight", str(stats.in_flight))
    table.add_row("submitted (total)", str(stats.submitted))
    table.add_row("done", str(stats.completed))
    table.add_row("failed", str(stats.failed))
    table.add_row("dead-lettered", str(stats.dead))
    table.add_row("cancelled", str(stats.cancelled))
    table.add_row("expired", str(stats.expired))
    table.add_row("dead letters held", str(stats.dead_letters))
    table.add_row("workers", str(stats.workers))
    table.add_row("oldest queued", _ago(stats.oldest_queued_age_s))
    limit = "?" if stats.solver_slots_limit is None else str(stats.solver_slots_limit)
    table.add_row("solver slots", f"{stats.solver_slots_used} / {limit}")
    now_ms = pauses.now_ms if pauses is not None else 0
    table.add_row("paused", _pause_text(stats, pauses.fleet if pauses is not None else None, now_ms))
    for account in pauses.accounts if pauses is not None else ():
        left = (
            "until resumed"
            if account.until_ms is None
            else f"{_ago((account.until_ms - now_ms) / 1000)} left"
        )
        text = f"{account.reason} [{account.code or '?'}], {left}, by worker {account.worker or '?'}"
        table.add_row(f"paused account {esc(account.ref or '?')}", f"[red]yes[/red]: {esc(text)}")
    return table


def _pause_text(stats: Stats, pause: Pause | None, now_ms: int) -> str:
    if not stats.paused and pause is None:
        return "no"
    reason = stats.paused or (pause.reason if pause else "") or "paused"
    if pause is not None and pause.code:
        reason = f"{reason} [{pause.code}]"
    if pause is not None and pause.until_ms is not None:
        reason += f", {_ago((pause.until_ms - now_ms) / 1000)} left"
    elif pause is not None:
        reason += ", until resumed"
    return f"[red]yes[/red]: {esc(reason)}"


def _stats_doc(stats: Stats, pauses: PauseState) -> dict[str, Any]:
    doc: dict[str, Any] = msgspec.to_builtins(stats)
    doc["queued_total"] = stats.queued_total
    doc["pause"] = msgspec.to_builtins(pauses.fleet) if pauses.fleet is not None else None
    doc["account_pauses"] = msgspec.to_builtins(pauses.accounts)
    return doc


@cli.command("stats")
@connection_options
@click.option("--watch", is_flag=True, help="Keep the table live until Ctrl-C.")
@click.option(
    "--interval",
    "interval_s",
    type=FiniteFloat(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
@click.option(
    "--count", type=click.IntRange(min=1), default=None, help="With --watch: stop after N refreshes."
)
@click.option(
    "--account",
    default="default",
    show_default=True,
    callback=checked(validate_account),
    help="Whose solver slots to count.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document (one per refresh with --watch).")
@click.option(
    "--namespaces",
    "namespaces",
    default=None,
    callback=checked(namespace_list),
    help="Several namespaces (a,b): one row each and the totals (not with --watch).",
)
def stats_cmd(
    watch: bool,
    interval_s: float,
    count: int | None,
    account: str,
    as_json: bool,
    namespaces: list[str] | None,
) -> None:
    """Queued per priority, delayed, in flight, finished counts, workers, pause, solver slots; and per
    registered account: its slots, pause, workers and tasks in flight."""
    settings = get_settings()
    if namespaces is not None:
        namespaces_stats(settings, namespaces, account, as_json=as_json, watch=watch)
        return

    async def snapshot(q: AsyncCaptchaQueue) -> tuple[Stats, PauseState, list[AccountStats]]:
        return await q.stats(account), await q.pause_state(), await q.account_stats()

    def document(stats: Stats, pauses: PauseState, per_account: list[AccountStats]) -> dict[str, Any]:
        doc = _stats_doc(stats, pauses)
        doc["accounts"] = msgspec.to_builtins(per_account)
        return doc

    def tables(stats: Stats, pauses: PauseState, per_account: list[AccountStats]) -> RenderableType:
        table = stats_table(stats, settings.namespace, pauses)
        return Group(table, account_stats_table(per_account)) if per_account else table

    async def go() -> None:
        async with open_queue(settings) as q:
            for warning in await doctor_cmd.warnings(q.client):
                click.echo(f"warning: Redis {warning} (see `captcha-queue doctor`)", err=True)
            if not watch:
                if as_json:
                    echo_json(document(*await snapshot(q)))
                else:
                    _console().print(tables(*await snapshot(q)))
                return
            rounds = 0
            if as_json:
                while count is None or rounds < count:
                    echo_json(document(*await snapshot(q)))
                    rounds += 1
                    if count is None or rounds < count:
                        await asyncio.sleep(interval_s)
                return
            console = _console()
            with Live(console=console, auto_refresh=False, transient=False) as live:
                while count is None or rounds < count:
                    live.update(tables(*await snapshot(q)), refresh=True)
                    rounds += 1
                    if count is None or rounds < count:
                        await asyncio.sleep(interval_s)

    with _until_interrupted():
        run(go())


def account_stats_table(accounts: list[AccountStats]) -> Table:
    """The registered accounts now (routing order): slots, pause, workers, tasks held, and the balance
    their workers last read ("?" while none has)."""
    table = Table(title="accounts (routing order)")
    for column in ("account", "provider", "slots", "workers", "in flight", "balance", "paused"):
        table.add_column(column, justify="right" if column == "balance" else "left")
    for a in accounts:
        limit = str(a.slots_limit) if a.slots_limit is not None else "-"
        paused = (a.pause_code or "yes") if a.paused else "no"  # the reason is in the table above
        table.add_row(
            esc(a.name),
            esc(a.provider),
            f"{a.slots_used}/{limit}",
            str(a.workers),
            str(a.in_flight),
            f"{a.balance:g}" if a.balance is not None else "?",
            esc(paused),
        )
    return table


@contextlib.contextmanager
def _until_interrupted() -> Iterator[None]:
    """Ctrl-C is how a watching command is meant to end: exit 0, no "interrupted"."""
    try:
        yield
    except KeyboardInterrupt:
        pass


# -- workers ------------------------------------------------------------------------------------------


@cli.group("workers", invoke_without_command=True)
@connection_options
@click.option("--all", "show_all", is_flag=True, help="Include workers whose heartbeat has lapsed.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array.")
@click.pass_context
def workers_cmd(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """Registered worker processes: id, host, pid, age, tasks in flight, version, heartbeat, drain
    requested (``workers drain ID``: ask one to drain)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = get_settings()

    async def go() -> list[WorkerEntry]:
        async with open_queue(settings) as q:
            return await q.workers(include_dead=show_all)

    entries = run(go())
    if as_json:
        echo_json(entries)
        return
    if not entries:
        click.echo("no live workers" if not show_all else "no workers registered")
        return
    table = Table(title=f"workers · {settings.namespace}", title_justify="left")
    for column in ("id", "host", "pid", "up", "in flight", "version", "heartbeat", "drain"):
        table.add_column(
            column, justify="right" if column in ("pid", "in flight") else "left", no_wrap=column == "id"
        )
    now_s = time.time()
    for entry in entries:
        info = entry.info
        started = _epoch_s(info.get("started_at", info.get("started", info.get("started_ms"))))
        beat = (
            f"in {entry.heartbeat_in_s:.0f} s"
            if entry.alive
            else f"[red]lapsed {-entry.heartbeat_in_s:.0f} s[/red]"
        )
        table.add_row(
            esc(entry.id),
            esc(str(info.get("host", "-"))),
            esc(str(info.get("pid", "-"))),
            _ago(now_s - started) if started else "-",
            esc(_in_flight(info)),
            esc(str(info.get("version", "-"))),
            beat,
            esc(_clip(entry.drain.reason)) if entry.drain is not None else "-",
        )
    _console().print(table)


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@workers_cmd.command("drain")
@connection_options
@click.argument("worker_id", metavar="WORKER_ID")
@click.option(
    "--reason",
    default="drained by operator",
    show_default=True,
    help="Logged by the worker, shown by `workers`.",
)
def workers_drain_cmd(worker_id: str, reason: str) -> None:
    """Ask one live worker process to drain: at its next heartbeat it stops claiming, finishes its
    tasks in flight (releasing those still running after --grace-s), unregisters and exits 0; a
    child of `worker --processes P` is then not restarted."""
    settings = get_settings()

    async def go() -> bool:
        async with open_queue(settings) as q:
            return await q.drain_worker(worker_id, reason=reason)

    if not run(go()):
        raise CaptchaQueueError(
            f"no live worker {worker_id!r} in namespace {settings.namespace} (see `captcha-queue workers`)"
        )
    click.echo(f"drain requested for worker {worker_id}: it stops claiming at its next heartbeat")


def _in_flight(info: dict[str, Any]) -> str:
    # A registration omits in_flight while it is 0 (omit_defaults).
    in_flight, concurrency = info.get("in_flight", 0 if info else None), info.get("concurrency")
    if in_flight is None:
        return "-"
    return f"{in_flight} / {concurrency}" if concurrency else str(in_flight)


def _epoch_s(value: Any) -> float | None:
    """A registration timestamp in seconds, whether it was written in seconds or milliseconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return value / 1000 if value > 1e11 else float(value)


# -- account ------------------------------------------------------------------------------------------


@cli.command("account")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def account_cmd(as_json: bool) -> None:
    """The solver account: threads, threads working now, balance (uses CAPTCHAAI_KEY)."""
    settings = get_settings()
    key = settings.require_key()

    async def go() -> Any:
        from ..solvers.captchaai import CaptchaAISolver

        async with CaptchaAISolver(key, base_url=settings.captchaai_url) as solver:
            return await solver.account_info()

    info = run(go())
    if as_json:
        echo_json(info)
        return
    table = Table(title="solver account", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("service", esc(settings.captchaai_url))
    free = None
    if info.threads is not None and info.working_threads is not None:
        free = max(0, info.threads - info.working_threads)
    table.add_row("threads", _or_dash(info.threads))
    table.add_row("working threads", _or_dash(info.working_threads))
    table.add_row("free threads", _or_dash(free))
    table.add_row("balance", "-" if info.balance is None else f"{info.balance:.4f}")
    _console().print(table)


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


# -- pause / resume -----------------------------------------------------------------------------------


@cli.command("pause")
@connection_options
@click.option("--reason", default="paused by operator", show_default=True, help="Shown in stats.")
@click.option(
    "--for",
    "for_s",
    type=FiniteFloat(min=0, min_open=True),
    default=None,
    help="Seconds until the pause ends by itself (default: until `resume`).",
)
def pause_cmd(reason: str, for_s: float | None) -> None:
    """Stop every worker of the namespace from claiming; queued tasks stay queued, in flight ones finish."""
    settings = get_settings()

    async def go() -> Pause:
        async with open_queue(settings) as q:
            pause, _ = await q.pause(reason, for_s)
            return pause

    pause = run(go())
    until = f" for {for_s:g} s" if for_s is not None and pause.until_ms else " until `captcha-queue resume`"
    click.echo(f"paused {settings.namespace}{until}: {reason}")


@cli.command("resume")
@connection_options
@click.option(
    "--account",
    default=None,
    help="Lift only this account's pause (its name, name/fingerprint or key fingerprint, as stats shows).",
)
def resume_cmd(account: str | None) -> None:
    """Lift the fleet-wide pause and every account's (``--account``: that account's only)."""
    settings = get_settings()

    async def go() -> list[Pause]:
        async with open_queue(settings) as q:
            return await q.resume(account)

    lifted = run(go())
    if not lifted:
        which = settings.namespace if account is None else f"account {account} of {settings.namespace}"
        click.echo(f"{which} was not paused")
    for pause in lifted:
        if pause.ref is None:
            click.echo(f"resumed {settings.namespace} (was paused: {pause.reason})")
            continue
        click.echo(
            f"resumed account {pause.ref} (was paused by worker {pause.worker or '?'}: {pause.reason})"
        )


# -- dead letters -------------------------------------------------------------------------------------


@cli.group("dlq")
def dlq_group() -> None:
    """The dead-letter queue: tasks that ran out of attempts or could not be read."""


@dlq_group.command("list")
@connection_options
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON array.")
def dlq_list_cmd(limit: int, as_json: bool) -> None:
    """The most recent dead letters."""
    settings = get_settings()

    async def go() -> list[DeadLetter]:
        async with open_queue(settings) as q:
            return await q.dead_letters(limit=limit)

    letters = run(go())
    if as_json:
        echo_json(letters)
        return
    if not letters:
        click.echo("no dead letters")
        return
    table = Table(title=f"dead letters · {settings.namespace}", title_justify="left")
    for column in ("id", "dead at", "method", "priority", "attempts", "reason"):
        table.add_column(column, justify="right" if column == "attempts" else "left", no_wrap=column == "id")
    for letter in letters:
        task = letter.task
        table.add_row(
            esc(letter.id),
            _clock(letter.dead_at),
            esc(task.method) if task else "?",
            task.priority if task else "?",
            str(len(letter.history)),
            esc(_preview(letter.reason, 60)),
        )
    _console().print(table)


@dlq_group.command("show")
@connection_options
@click.argument("task_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def dlq_show_cmd(task_id: str, as_json: bool) -> None:
    """One dead letter: the task, why it died, and every attempt."""
    settings = get_settings()

    async def go() -> DeadLetter | None:
        async with open_queue(settings) as q:
            return await q.dead_letter(task_id)

    letter = run(go())
    if letter is None:
        raise TaskNotFound(f"no dead letter {task_id}")
    if as_json:
        echo_json(letter)
        return
    console = _console()
    console.print(f"[bold]{esc(letter.id)}[/bold]  dead at {_clock(letter.dead_at)}")
    console.print(f"reason: {letter.reason}", markup=False)
    if letter.task is not None:
        task = letter.task
        line = f"method: {task.method}  priority: {task.priority}  max attempts: {task.max_attempts}"
        console.print(line, markup=False)
        console.print(f"submitted: {_clock(task.submitted_at)}")
        for name, value in sorted(task.params.items()):
            console.print(f"  {name} = {_preview(str(value))}", markup=False)
    elif letter.raw is not None:
        console.print(f"unreadable entry: {_preview(letter.raw, 200)}", markup=False)
    if letter.history:
        table = Table(title="attempts", title_justify="left")
        for column in ("#", "worker", "started", "ended", "outcome", "error"):
            table.add_column(column)
        for attempt in letter.history:
            error = " ".join(x for x in (attempt.error_code, attempt.error_message) if x)
            table.add_row(
                str(attempt.attempt),
                esc(attempt.worker_id or "-"),
                _clock(attempt.started_at),
                _clock(attempt.ended_at),
                esc(attempt.outcome or "-"),
                esc(_preview(error, 60)),
            )
        console.print(table)


@dlq_group.command("requeue")
@connection_options
@click.argument("task_ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "requeue_all", is_flag=True, help="Requeue every dead letter.")
def dlq_requeue_cmd(task_ids: tuple[str, ...], requeue_all: bool) -> None:
    """Put dead tasks back in their queue with fresh attempts."""
    if bool(task_ids) == requeue_all:
        raise click.UsageError("give task ids or --all (not both)")
    settings = get_settings()

    async def go() -> list[str]:
        missing: list[str] = []
        async with open_queue(settings) as q:
            if requeue_all:
                n = await q.requeue_all()
                click.echo(f"requeued {n} task(s)")
                return missing
            for task_id in dict.fromkeys(task_ids):
                if await q.requeue(task_id):
                    click.echo(f"requeued {task_id}")
                else:
                    missing.append(task_id)
        return missing

    missing = run(go())
    if missing:
        raise TaskNotFound(f"no dead letter {', '.join(missing)}")


@dlq_group.command("purge")
@connection_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def dlq_purge_cmd(yes: bool) -> None:
    """Delete every dead letter for good."""
    settings = get_settings()
    if not yes:
        click.confirm(f"Delete every dead letter of {settings.namespace}?", abort=True)

    async def go() -> int:
        async with open_queue(settings) as q:
            return await q.purge_dead()

    click.echo(f"purged {run(go())} dead letter(s)")


# -- listen -------------------------------------------------------------------------------------------


def _listen_line(result: Result) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(result.finished_at))
    e2e = f"{max(0.0, result.finished_at - result.submitted_at):.2f}s"
    if result.ok and result.solution is not None:
        outcome = _preview(result.solution.text)
    else:
        outcome = " ".join(x for x in (result.error_code, result.error_message) if x) or result.status
    return (
        f"{clock}  {result.id}  {result.status:<9} {result.method:<16} {result.priority:<6} "
        f"attempts={result.attempts} e2e={e2e}  {_preview(outcome)}"
    )


@cli.command("listen")
@connection_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document per line (JSON Lines).")
@click.option(
    "--from",
    "from_id",
    default=None,
    metavar="EVENT_ID",
    callback=checked(check_event_id),
    help="Start after this event id (JSON lines carry one; 0: from the oldest kept). Default: from now.",
)
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N completions.")
def listen_cmd(as_json: bool, from_id: str | None, count: int | None) -> None:
    """Print every completion of the namespace as it happens, until Ctrl-C."""
    settings = get_settings()

    async def go() -> None:
        seen = 0
        async with open_queue(settings) as q:
            async for event_id, result in q.listen_events(from_id=from_id):
                if as_json:
                    echo_json({"event_id": event_id, **msgspec.to_builtins(result)})
                else:
                    click.echo(_listen_line(result))
                seen += 1
                if count is not None and seen >= count:
                    return

    with _until_interrupted():
        run(go())
    sys.stdout.flush()

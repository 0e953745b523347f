"""Producer commands: ``submit``, ``result``, ``wait``, ``cancel``, ``report``.

Exit codes: 0 the task(s) succeeded (or the command did what it says); 1 an error (one line on
stderr); 2 a usage error; 3 a task finished without a solution (error, cancelled, expired); 4 no
result within ``--timeout`` (the task may still finish).
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import click

from ..errors import InvalidTask, TaskNotFound
from ..models import PRIORITIES, Priority, Result
from .app import (
    EXIT_NOT_OK,
    EXIT_TIMEOUT,
    FiniteFloat,
    cli,
    connection_options,
    echo_json,
    get_settings,
    open_queue,
    run,
)

if TYPE_CHECKING:
    from ..queue._producer import AsyncCaptchaQueue

__all__ = ["parse_params", "print_result"]

_PREVIEW_CHARS = 60


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``key=value`` arguments as a dict. ``key=@file`` is the file's bytes in base64, ``key=@-``
    standard input's, and ``key=@@text`` the literal ``@text``."""
    params: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidTask(f"parameters are key=value, got {item!r}", field="params")
        if name in params:
            raise InvalidTask(f"param {name!r} is given twice", field=name)
        if value.startswith("@@"):
            value = value[1:]
        elif value.startswith("@"):
            value = _read_base64(name, value[1:])
        params[name] = value
    return params


def _read_base64(name: str, source: str) -> str:
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).expanduser().read_bytes()
    except OSError as exc:
        raise InvalidTask(
            f"param {name!r}: cannot read {source}: {exc.strerror or exc}", field=name
        ) from None
    if not data:
        raise InvalidTask(f"param {name!r}: {source} is empty", field=name)
    return base64.b64encode(data).decode("ascii")


def print_result(result: Result, *, as_json: bool) -> int:
    """Print one task's result; returns the exit code it deserves (0 or EXIT_NOT_OK)."""
    if as_json:
        echo_json(result)
    elif result.ok and result.solution is not None:
        click.echo(result.solution.text)
        if result.solution.user_agent:
            click.echo(f"user agent: {result.solution.user_agent}", err=True)
    else:
        click.echo(f"task {result.id} {result.status}: {_failure(result)}", err=True)
    return 0 if result.ok else EXIT_NOT_OK


def _failure(result: Result) -> str:
    parts = [result.error_code] if result.error_code else []
    if result.error_message and result.error_message != result.error_code:
        parts.append(result.error_message)
    return f"{': '.join(parts) or result.status} (attempts: {result.attempts})"


def _result_line(result: Result) -> str:
    if result.ok and result.solution is not None:
        outcome = _preview(result.solution.text)
    else:
        outcome = _failure(result)
    return f"{result.id}\t{result.status}\t{outcome}"


def _preview(text: str) -> str:
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 3] + "..."


def _pending(task_id: str, *, as_json: bool, timeout_s: float | None) -> int:
    if as_json:
        echo_json({"id": task_id, "status": "pending"})
    within = f" within {timeout_s:g} s" if timeout_s is not None else " yet"
    click.echo(f"error: no result for task {task_id}{within}; it may still finish", err=True)
    return EXIT_TIMEOUT


async def _task_exists(q: AsyncCaptchaQueue, task_id: str) -> bool:
    return await q.status(task_id) is not None


_timeout_option = click.option(
    "--timeout",
    "timeout_s",
    type=FiniteFloat(min=0, min_open=True),
    default=120.0,
    show_default=True,
    help="Seconds to wait for the result.",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


@cli.command("submit")
@connection_options
@click.argument("method")
@click.argument("params", nargs=-1, metavar="KEY=VALUE...")
@click.option("--priority", type=click.Choice(PRIORITIES), default="normal", show_default=True)
@click.option("--idempotency-key", default=None, help="Submitting the same key again returns the same id.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--expires-in",
    "expires_in_s",
    type=FiniteFloat(min=0, min_open=True),
    default=None,
    help="Seconds after which the task expires unsolved.",
)
@click.option(
    "--pingback",
    metavar="URL",
    default=None,
    help="Send the result to this http(s) URL when the task is final (see captcha-queue webhooks).",
)
@click.option(
    "--pingback-format",
    type=click.Choice(["form", "get", "json", "jsonapi"]),
    default="form",
    show_default=True,
    help="form: POST id, code, status; get: the same as query parameters; json: POST the whole result.",
)
@click.option(
    "--allow-private-target",
    is_flag=True,
    help="Accept a pingback to a literal private or loopback address (refused by default: SSRF).",
)
@click.option("--wait", is_flag=True, help="Wait for the result and print it instead of the id.")
@_timeout_option
@_json_option
def submit_cmd(
    method: str,
    params: tuple[str, ...],
    priority: str,
    idempotency_key: str | None,
    max_attempts: int,
    expires_in_s: float | None,
    pingback: str | None,
    pingback_format: str,
    allow_private_target: bool,
    wait: bool,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Queue one task and print its id (or, with --wait, its answer).

    Parameters are KEY=VALUE; KEY=@FILE sends the file base64-encoded (body=@captcha.png),
    KEY=@- reads standard input. Example:

        captcha-queue submit turnstile sitekey=0x4AAA pageurl=https://example.com --wait
    """
    from ..protocol.methods import normalize
    from ..protocol.pingback import check_pingback

    parsed = parse_params(params)
    normalize(method, parsed)  # refuse a bad task before touching Redis
    if pingback is not None:
        check_pingback(pingback, allow_private=allow_private_target)
    settings = get_settings()

    async def go() -> int:
        async with open_queue(settings, allow_private_targets=allow_private_target) as q:
            task_id = await q.submit(
                method,
                parsed,
                priority=cast(Priority, priority),
                idempotency_key=idempotency_key,
                max_attempts=max_attempts,
                expires_in_s=expires_in_s,
                pingback=pingback,
                pingback_format=cast(Literal["form", "get", "json", "jsonapi"], pingback_format),
            )
            if not wait:
                if as_json:
                    echo_json({"id": task_id})
                else:
                    click.echo(task_id)
                return 0
            result = await q.wait_result(task_id, timeout_s=timeout_s)
        if result is None:
            return _pending(task_id, as_json=as_json, timeout_s=timeout_s)
        return print_result(result, as_json=as_json)

    sys.exit(run(go()))


@cli.command("result")
@connection_options
@click.argument("task_id", metavar="ID")
@_json_option
def result_cmd(task_id: str, as_json: bool) -> None:
    """Print a task's result now, without waiting (exit 4 while it is still pending)."""
    settings = get_settings()

    async def go() -> int:
        async with open_queue(settings) as q:
            result = await q.get_result(task_id)
            if result is None:
                if not await _task_exists(q, task_id):
                    raise TaskNotFound(f"no task {task_id} (unknown, or its result has expired)")
                return _pending(task_id, as_json=as_json, timeout_s=None)
        return print_result(result, as_json=as_json)

    sys.exit(run(go()))


@cli.command("wait")
@connection_options
@click.argument("task_ids", nargs=-1, required=True, metavar="ID...")
@_timeout_option
@_json_option
def wait_cmd(task_ids: tuple[str, ...], timeout_s: float, as_json: bool) -> None:
    """Wait for tasks and print each result as it arrives: "ID<tab>status<tab>answer or error"."""
    ids = list(dict.fromkeys(task_ids))
    settings = get_settings()

    async def go() -> int:
        code = 0
        remaining = set(ids)
        async with open_queue(settings) as q:
            try:
                async for result in q.as_completed(ids, timeout_s=timeout_s):
                    remaining.discard(result.id)
                    if as_json:
                        echo_json(result)
                    else:
                        click.echo(_result_line(result))
                    if not result.ok:
                        code = EXIT_NOT_OK
            except TimeoutError:
                pass
        if remaining:
            late = [i for i in ids if i in remaining]
            if as_json:
                for task_id in late:
                    echo_json({"id": task_id, "status": "pending"})
            shown = ", ".join(late[:5]) + (f" and {len(late) - 5} more" if len(late) > 5 else "")
            click.echo(f"error: no result within {timeout_s:g} s for {len(late)} task(s): {shown}", err=True)
            return EXIT_TIMEOUT
        return code

    sys.exit(run(go()))


@cli.command("cancel")
@connection_options
@click.argument("task_ids", nargs=-1, required=True, metavar="ID...")
@_json_option
def cancel_cmd(task_ids: tuple[str, ...], as_json: bool) -> None:
    """Cancel tasks that have not finished (a claimed task is dropped by its worker)."""
    settings = get_settings()

    async def go() -> int:
        code = 0
        async with open_queue(settings) as q:
            for task_id in dict.fromkeys(task_ids):
                cancelled = await q.cancel(task_id)
                outcome: dict[str, Any] = {"id": task_id, "cancelled": cancelled}
                if not cancelled:
                    code = 1
                    existing = await q.get_result(task_id)
                    if existing is not None:
                        outcome["status"] = existing.status
                        why = f"it already finished ({existing.status})"
                    elif await _task_exists(q, task_id):
                        why = "it is finishing"
                    else:
                        why = "no such task"
                    outcome["reason"] = why
                    click.echo(f"error: task {task_id} was not cancelled: {why}", err=True)
                if as_json:
                    echo_json(outcome)
                elif cancelled:
                    click.echo(f"cancelled {task_id}")
        return code

    sys.exit(run(go()))


@cli.command("report")
@connection_options
@click.argument("task_id", metavar="ID")
@click.option("--bad", "verdict", flag_value="bad", help="The answer did not work: claim a refund.")
@click.option("--good", "verdict", flag_value="good", help="The answer worked.")
@_json_option
def report_cmd(task_id: str, verdict: str | None, as_json: bool) -> None:
    """Tell the account that solved a task whether its answer worked (once per task).

    A worker of that account sends the verdict to the service. Exit 1 when the task was reported
    before (nothing is sent again) or has no answer to report on."""
    if verdict is None:
        raise click.UsageError("give --bad (the answer did not work: a refund) or --good")
    settings = get_settings()

    async def go() -> int:
        async with open_queue(settings) as q:
            recorded = await q.report(task_id, correct=verdict == "good")
        if as_json:
            echo_json({"id": task_id, "verdict": verdict, "recorded": recorded})
        elif recorded:
            click.echo(f"reported {task_id} {verdict}: a worker of its account sends it")
        if not recorded:
            click.echo(f"error: task {task_id} was reported before; nothing sent again", err=True)
            return 1
        return 0

    sys.exit(run(go()))

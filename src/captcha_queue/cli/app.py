"""The root command, shared options and the one-line error handling every command gets.

Configuration comes from the environment (``REDIS_URL``, ``CAPTCHA_QUEUE_NAMESPACE``, ``CAPTCHAAI_URL``,
``CAPTCHAAI_KEY``), overridden by the root options (``captcha-queue --namespace x stats``). A command
reads it with ``get_settings(ctx)``, which parses it on first use, so a bad variable only fails the
commands that need it. Commands that talk to Redis use ``open_queue``; async commands run through
``run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import reprlib
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import msgspec
import redis

from ..errors import CaptchaQueueError, ConfigError, InvalidArgument, RedisCommandError, RedisUnavailable
from ..store.server import redact_url
from .config import ENV_CAPTCHAAI_KEY, Settings

if TYPE_CHECKING:
    from ..queue._producer import AsyncCaptchaQueue

__all__ = [
    "EXIT_ERROR",
    "EXIT_NOT_OK",
    "EXIT_TIMEOUT",
    "CliCommand",
    "CliGroup",
    "CliState",
    "FiniteFloat",
    "checked",
    "cli",
    "connection_options",
    "echo_json",
    "get_settings",
    "main",
    "open_queue",
    "run",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: Exit codes shared by the task commands (click itself uses 2 for usage errors).
EXIT_ERROR = 1  # the command failed: configuration, Redis, unknown id, ...
EXIT_NOT_OK = 3  # the task finished, but not with a solution (error, cancelled, expired)
EXIT_TIMEOUT = 4  # no result within --timeout (the task may still finish)


class CliCommand(click.Command):
    """A command that refuses arguments that are not valid UTF-8 before it runs."""

    def invoke(self, ctx: click.Context) -> Any:
        _check_utf8(ctx)
        return super().invoke(ctx)


class CliGroup(click.Group):
    """A group whose errors are one readable line and a non-zero exit (a traceback with --debug):
    a usage error (a bad option or argument) exits 2, as in click, every other error 1."""

    command_class = CliCommand
    group_class = type  # subgroups (dlq) are CliGroups too

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        """The root's own options are parsed here, before ``invoke``: their usage errors get the same
        one line (``--debug`` has not been read yet, so always)."""
        if parent is not None:
            return super().make_context(info_name, args, parent, **extra)
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            if isinstance(exc, click.exceptions.NoArgsIsHelpError):
                raise
            path = exc.ctx.command_path if exc.ctx is not None else (info_name or "captcha-queue")
            click.echo(
                f"error: {_printable(_first_line(exc.format_message()))} (see '{path} --help')", err=True
            )
            sys.exit(exc.exit_code)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            _check_utf8(ctx)
            return super().invoke(ctx)
        except CaptchaQueueError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(EXIT_ERROR)
        except click.UsageError as exc:
            if isinstance(exc, click.exceptions.NoArgsIsHelpError) or ctx.find_root().params.get("debug"):
                raise
            path = (exc.ctx or ctx).command_path
            click.echo(
                f"error: {_printable(_first_line(exc.format_message()))} (see '{path} --help')", err=True
            )
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


def _one_line(exc: BaseException) -> str:
    return _printable(_first_line(str(exc)) or type(exc).__name__)


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def _printable(text: str) -> str:
    """``text`` with what cannot be written as UTF-8 (a non-UTF-8 argv byte) escaped, like repr does."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_utf8(ctx: click.Context) -> None:
    """Refuse an argument that is not valid UTF-8 (Python hands a non-UTF-8 argv byte over as a lone
    surrogate, which Redis cannot be sent). Paths are exempt: the file system takes any bytes."""
    for param in ctx.command.params:
        if param.name is not None and not isinstance(param.type, click.Path):
            _utf8(ctx, param, ctx.params.get(param.name))


def _utf8(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, str) and _printable(item) != item:
            raise click.BadParameter(f"{reprlib.repr(item)} is not valid UTF-8", ctx=ctx, param=param)


class FiniteFloat(click.FloatRange):
    """The type of every float option: a FloatRange (bounds optional) that also refuses NaN and
    infinities, which FloatRange lets through."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if not math.isfinite(click.FLOAT.convert(value, param, ctx)):  # NaN would pass the range check
            self.fail(f"{reprlib.repr(value)} is not a finite number.", param, ctx)
        return super().convert(value, param, ctx)

    def _describe_range(self) -> str:
        return "" if self.min is None and self.max is None else super()._describe_range()


def checked(check: Callable[[Any], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback running one of the library's checks (``validate_account``...): its
    InvalidArgument becomes a usage error (exit 2) before anything runs."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except InvalidArgument as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None

    return callback


@dataclass
class CliState:
    """What the root command hands to its subcommands through ``ctx.obj``."""

    debug: bool = False
    redis_url: str | None = None
    namespace: str | None = None
    captchaai_url: str | None = None
    captchaai_key_file: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        if self._settings is None:
            key = _read_key_file(self.captchaai_key_file) if self.captchaai_key_file else None
            self._settings = Settings.load(
                redis_url=self.redis_url,
                namespace=self.namespace,
                captchaai_url=self.captchaai_url,
                captchaai_key=key,
            )
        return self._settings


def _read_key_file(path: Path) -> str:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    if not key:
        raise ConfigError(f"the key file {path} is empty")
    return key


@click.group(cls=CliGroup)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("--redis-url", metavar="URL", default=None, help="Redis URL [env: REDIS_URL].")
@click.option(
    "--namespace",
    "-n",
    metavar="NAME",
    default=None,
    help="Queue namespace (default: captcha) [env: CAPTCHA_QUEUE_NAMESPACE].",
)
@click.option(
    "--captchaai-url",
    metavar="URL",
    default=None,
    help="Base URL of the solver service or the simulator [env: CAPTCHAAI_URL].",
)
@click.option(
    "--captchaai-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Read the solver API key from this file (default: ${ENV_CAPTCHAAI_KEY}).",
)
@click.version_option(package_name="captcha-queue")
@click.pass_context
def cli(
    ctx: click.Context,
    debug: bool,
    redis_url: str | None,
    namespace: str | None,
    captchaai_url: str | None,
    captchaai_key_file: Path | None,
) -> None:
    """captcha-queue: a reliable Redis queue for CAPTCHA-solving tasks."""
    ctx.obj = CliState(
        debug=debug,
        redis_url=redis_url,
        namespace=namespace,
        captchaai_url=captchaai_url,
        captchaai_key_file=captchaai_key_file,
    )


def _override(name: str) -> Callable[[click.Context, click.Parameter, str | None], None]:
    def store(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        _utf8(ctx, param, value)  # not exposed, so not seen by _check_utf8
        if value is not None:
            state = ctx.find_object(CliState) or ctx.ensure_object(CliState)
            setattr(state, name, value)
            state._settings = None

    return store


def connection_options(command: F) -> F:
    """``--redis-url`` and ``--namespace/-n`` after the subcommand too (they win over the root's)."""
    command = click.option(
        "--namespace",
        "-n",
        metavar="NAME",
        expose_value=False,
        callback=_override("namespace"),
        help="Queue namespace [env: CAPTCHA_QUEUE_NAMESPACE].",
    )(command)
    return click.option(
        "--redis-url",
        metavar="URL",
        expose_value=False,
        callback=_override("redis_url"),
        help="Redis URL [env: REDIS_URL].",
    )(command)


def get_settings(ctx: click.Context | None = None) -> Settings:
    """The settings of this invocation (environment + root options), parsed on first use."""
    ctx = ctx or click.get_current_context()
    state = ctx.find_object(CliState)
    if state is None:  # a command invoked on its own, outside the root group (tests, embedding)
        state = ctx.ensure_object(CliState)
    return state.settings()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine on a fresh event loop."""
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def open_queue(settings: Settings, **options: Any) -> AsyncIterator[AsyncCaptchaQueue]:
    """An AsyncCaptchaQueue on ``settings`` (and queue ``options``); any connection failure becomes one
    line naming the URL.

    The server is pinged (and its version checked) before the command starts, so "Redis is down"
    is told apart from whatever the command does next.
    """
    from ..store.connection import check_server, make_client

    shown = redact_url(settings.redis_url)
    client = make_client(settings.redis_url, max_connections=8)
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                await check_server(client)
                from ..queue._producer import (
                    AsyncCaptchaQueue,  # imported late: commands without Redis stay light
                )

                queue = await stack.enter_async_context(
                    AsyncCaptchaQueue(client, namespace=settings.namespace, **options)
                )
            except RedisUnavailable as exc:
                error = _unreachable(shown, exc)
                if isinstance(exc.__cause__, redis.AuthenticationError) and settings.redis_password_file:
                    # A file left by a killed private server, and another server on its port now.
                    error = RedisUnavailable(f"{error} (password from {settings.redis_password_file})")
                raise error from exc
            except (redis.RedisError, RedisCommandError) as exc:  # refused at connect: wrong db, ACL, auth...
                cause = exc.__cause__ if isinstance(exc, RedisCommandError) and exc.__cause__ else exc
                raise RedisUnavailable(
                    f"Redis at {shown} refused the connection: {_one_line(cause)}"
                ) from exc
            try:
                yield queue
            except RedisUnavailable as exc:
                raise _unreachable(shown, exc) from exc
            except redis.ResponseError as exc:  # e.g. NOPERM for an ACL user; not worth a traceback
                raise CaptchaQueueError(f"Redis at {shown} answered an error: {_one_line(exc)}") from exc
    finally:
        # A client given a pool does not close it by default (redis-py); this one owns its pool.
        await client.aclose(close_connection_pool=True)


def _unreachable(shown_url: str, exc: RedisUnavailable) -> RedisUnavailable:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    reason = _one_line(cause)
    # connection.py already says "cannot reach Redis at host:port: reason"; keep only the reason.
    if reason.startswith("cannot reach ") and ": " in reason:
        reason = reason.split(": ", 1)[1]
    return RedisUnavailable(f"cannot reach Redis at {shown_url}: {reason}")


def echo_json(value: Any) -> None:
    """Print one JSON document on one line (msgspec structs included)."""
    click.echo(msgspec.json.encode(value).decode())


def main() -> None:
    cli(prog_name="captcha-queue")

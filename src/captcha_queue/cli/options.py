"""Command-line options generated from a settings dataclass (``captcha_queue.options``), so a flag, its
default, bounds, help and environment variable are never written twice.

    @cli.command("worker")
    @settings_options(WorkerSettings)
    def worker_cmd(**values): ...

Floats are ``FiniteFloat`` (NaN and infinities refused), integers ``IntRange``, choices ``Choice``,
booleans ``--x/--no-x``; a field's ``check`` runs as a callback (a usage error, exit 2). A secret is
never an option. Names in ``elsewhere`` are only parsed here (None when not given: no default, no
environment variable, no check): they are resolved where every command resolves them
(``Settings.load``: a root option wins over the environment).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeVar

import click

from ..options import Setting, settings_of
from .app import FiniteFloat, checked

__all__ = ["settings_options"]

F = TypeVar("F", bound=Callable[..., Any])


def settings_options(cls: type, *, elsewhere: Collection[str] = ()) -> Callable[[F], F]:
    """A decorator adding one click option per command-line setting of ``cls``, in field order."""

    def decorate(command: F) -> F:
        for s in reversed(settings_of(cls)):
            if s.option.cli:
                command = _option(s, here=s.name not in elsewhere)(command)
        return command

    return decorate


def _option(s: Setting, *, here: bool) -> Callable[[F], F]:
    option = s.option
    kwargs: dict[str, Any] = {}
    help_text = option.help
    if here:
        # The variable is named in the help, not by click's show_envvar (which also puts it in every
        # error message about the option).
        kwargs |= {"default": s.default, "show_default": s.default is not None, "envvar": s.env}
        if option.default_text is not None:
            help_text += f" [default: {option.default_text}]"
        if option.check is not None:
            kwargs["callback"] = checked(option.check)
    else:
        kwargs["default"] = None
        help_text += f" [default: {option.default_text or s.default}]"
    help_text += f" [env: {s.env}]"
    decls = [s.flag, s.name]
    if s.type is bool:
        decls[0] = f"{s.flag}/--no-{s.flag[2:]}"
    elif option.choices:
        kwargs["type"] = click.Choice(list(option.choices))
    elif s.type is int:
        low = None if option.min is None else int(option.min)
        high = None if option.max is None else int(option.max)
        kwargs["type"] = click.IntRange(low, high, min_open=option.min_open)
    elif s.type is float:
        kwargs["type"] = FiniteFloat(min=option.min, max=option.max, min_open=option.min_open)
    return click.option(*decls, help=help_text, **kwargs)

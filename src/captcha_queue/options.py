"""Settings declared once: a dataclass field carries its help text, unit, bounds, environment variable,
whether it reaches the supervisor's child processes and whether it is a secret.

    concurrency: int = setting(200, help="Tasks in flight per process.", unit="tasks", min=1)

From that one declaration come the check of a value (``check_settings`` in ``__post_init__``:
InvalidArgument for a value out of bounds, NaN or an infinity), the command-line options
(``cli/options.py``), the child processes' arguments (``to_argv``) and the documentation's table
(``render_table``). A field declared with a dataclass default (``limiter: LimiterConfig``) is searched
too, so a nested setting is one flat option (``--orphan-hold-s``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import InvalidArgument

__all__ = [
    "Option",
    "Setting",
    "build",
    "check_settings",
    "render_table",
    "setting",
    "settings_of",
    "to_argv",
]

T = TypeVar("T")

_KEY = "captcha_queue.option"
_ENV_PREFIX = "CAPTCHA_QUEUE_"
_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True)
class Option:
    """What a field means and accepts (see ``setting``)."""

    help: str
    unit: str = ""
    env: str | None = None
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    choices: tuple[str, ...] = ()
    check: Callable[[Any], Any] | None = None
    cli: bool = True
    child: bool = True
    secret: bool = False
    default_text: str | None = None


def setting(
    default: Any,
    *,
    help: str,
    unit: str = "",
    env: str | None = None,
    min: float | None = None,
    max: float | None = None,
    min_open: bool = False,
    choices: Iterable[str] = (),
    check: Callable[[Any], Any] | None = None,
    cli: bool = True,
    child: bool = True,
    secret: bool = False,
    default_text: str | None = None,
) -> Any:
    """A dataclass field with its metadata.

    ``env``: its variable (default ``CAPTCHA_QUEUE_<NAME>``). ``min``/``max``: inclusive bounds
    (``min_open``: the minimum itself is refused). ``check``: a validator raising InvalidArgument.
    ``cli``: a command-line option (a secret never is: environment or file only). ``child``: passed
    on to the supervisor's child processes. ``default_text``: how a ``None`` default reads in the docs.
    """
    option = Option(
        help=help,
        unit=unit,
        env=env,
        min=min,
        max=max,
        min_open=min_open,
        choices=tuple(choices),
        check=check,
        cli=cli and not secret,
        child=child and not secret,
        secret=secret,
        default_text=default_text,
    )
    return dataclasses.field(default=default, repr=not secret, metadata={_KEY: option})


@dataclass(frozen=True)
class Setting:
    """One declared field, found by ``settings_of`` (``path``: its place in nested dataclasses)."""

    name: str
    path: tuple[str, ...]
    option: Option
    type: type
    optional: bool
    default: Any

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return self.option.env or _ENV_PREFIX + self.name.upper()


def settings_of(cls: type) -> list[Setting]:
    """The declared settings of dataclass ``cls``, nested dataclass fields included, in field order."""
    found: list[Setting] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        option = f.metadata.get(_KEY)
        if isinstance(option, Option):
            kind, optional = _scalar(hints[f.name])
            found.append(Setting(f.name, (f.name,), option, kind, optional, f.default))
        elif (nested := _nested(f)) is not None:
            for inner in settings_of(nested):
                found.append(dataclasses.replace(inner, path=(f.name, *inner.path)))
    names = [s.name for s in found]
    if len(names) != len(set(names)):
        raise TypeError(f"{cls.__name__}: a setting name is declared twice")
    return found


def _nested(f: dataclasses.Field[Any]) -> type | None:
    """The dataclass a field defaults to (``field(default_factory=LimiterConfig)``), if any."""
    factory: object = f.default_factory
    return factory if isinstance(factory, type) and dataclasses.is_dataclass(factory) else None


def _scalar(hint: Any) -> tuple[type, bool]:
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    kinds = [a for a in args if a is not type(None)]
    if len(kinds) != 1 or kinds[0] not in (bool, int, float, str):
        raise TypeError(f"a setting must be a bool, int, float or str (or None), not {hint!r}")
    return kinds[0], len(kinds) < len(args)


def check_settings(obj: object) -> None:
    """Check the declared fields of ``obj`` itself (a nested dataclass checks its own): InvalidArgument
    naming the field for a wrong type, NaN, an infinity, a value out of bounds or a refused choice."""
    for s in settings_of(type(obj)):
        if len(s.path) == 1:
            _check(s, getattr(obj, s.name))


def _check(s: Setting, value: Any) -> None:
    if value is None and s.optional:
        return
    option = s.option

    def refuse(why: str) -> InvalidArgument:
        shown = "***" if option.secret else repr(value)
        return InvalidArgument(f"{s.name} {why}, got {shown}", field=s.name)

    number = s.type in (int, float)
    accepted = (int, float) if s.type is float else (s.type,)  # an int is a fine float, a bool no number
    if isinstance(value, bool) is not (s.type is bool) or not any(isinstance(value, k) for k in accepted):
        raise refuse(f"must be {_KINDS[s.type]}")
    if number and not math.isfinite(value):
        raise refuse("must be a finite number")
    low, high = option.min, option.max
    if low is not None and (value <= low if option.min_open else value < low):
        raise refuse(f"must be {'more than' if option.min_open else 'at least'} {low:g}")
    if high is not None and value > high:
        raise refuse(f"must be at most {high:g}")
    if option.choices and value not in option.choices:
        raise refuse(f"must be one of {', '.join(option.choices)}")
    if option.check is not None:
        option.check(value)


def build(cls: type[T], values: Mapping[str, Any], **fixed: Any) -> T:
    """An instance of dataclass ``cls`` from flat setting values (nested dataclasses rebuilt from
    their defaults); a name absent from ``values`` keeps its default. ``fixed``: other fields."""
    kwargs: dict[str, Any] = dict(fixed)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.name in kwargs:
            continue
        if isinstance(f.metadata.get(_KEY), Option):
            if f.name in values:
                kwargs[f.name] = values[f.name]
        elif (nested := _nested(f)) is not None:
            kwargs[f.name] = build(nested, values)
    return cls(**kwargs)


def _value(obj: object, s: Setting) -> Any:
    for part in s.path:
        obj = getattr(obj, part)
    return obj


def to_argv(obj: object, **overrides: Any) -> list[str]:
    """The command-line arguments that give a child process the settings of ``obj`` marked ``child``
    (``overrides`` by name win); a ``None`` value is left out. Secrets are never among them."""
    argv: list[str] = []
    for s in settings_of(type(obj)):
        if not (s.option.cli and s.option.child):
            continue
        value = overrides[s.name] if s.name in overrides else _value(obj, s)
        if value is None:
            continue
        if s.type is bool:
            argv.append(s.flag if value else "--no-" + s.flag[2:])
        else:
            argv += [s.flag, repr(value) if isinstance(value, float) else str(value)]
    return argv


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default_text(s: Setting) -> str:
    if s.option.default_text is not None:
        return s.option.default_text
    if s.default is None:
        return "none"
    if isinstance(s.default, bool):
        return "on" if s.default else "off"
    return f"`{s.default:g}`" if isinstance(s.default, float) else f"`{s.default}`"


def render_table(cls: type, *, command_line: bool = True) -> str:
    """A Markdown table of the settings of ``cls``: flag and environment variable (``command_line``)
    or field name, default, unit, meaning (with its choices)."""
    head = ["flag", "env"] if command_line else ["setting"]
    head += ["default", "unit", "meaning"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for s in settings_of(cls):
        option = s.option
        if command_line:
            row = [f"`{s.flag}`" if option.cli else "(environment only)", f"`{s.env}`"]
        else:
            row = [f"`{s.name}`"]
        meaning = option.help
        if option.choices:
            meaning += f" One of: {', '.join(f'`{c}`' for c in option.choices)}."
        if option.secret:
            meaning += " A secret: never on a command line, never logged."
        row += [_default_text(s), option.unit, meaning]
        lines.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
    return "\n".join(lines) + "\n"

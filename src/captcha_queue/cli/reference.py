"""The command-line reference, generated from the click commands themselves (never written by hand).

``render()`` returns Markdown: one section per command (groups recurse), with its usage line, help text and a
table of its options and arguments. ``docs/cli.md`` carries the marker ``<!-- cli-reference -->``, replaced at
build time by ``tools/mkdocs_hooks.py``; ``python -m captcha_queue.cli.reference`` prints the same text.
"""

from __future__ import annotations

import click

from .app import cli

__all__ = ["render"]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _param_row(param: click.Parameter, ctx: click.Context) -> str:
    if isinstance(param, click.Option):
        names = ", ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
        kind = (
            "flag" if param.is_flag else _cell(param.type.get_metavar(param, ctx) or param.type.name.upper())
        )
        help_text = _cell(param.help or "")
        default = param.get_default(ctx, call=False)
        shown = param.show_default is not False and default not in (None, False, ())
        if shown and not param.is_flag and not callable(default) and "UNSET" not in str(default):
            help_text += f" (default: `{_cell(str(default))}`)"
        if param.envvar and f"[env: {param.envvar}]" not in help_text:  # generated options name it
            help_text += f" (env: `{param.envvar}`)"
        if param.required:
            help_text += " (required)"
        return f"| {names} | {kind} | {help_text} |"
    name = (param.human_readable_name or param.name or "").upper()
    return f"| `{name}` | argument | {'required' if param.required else 'optional'} |"


def _section(command: click.Command, path: list[str], ctx: click.Context, depth: int) -> list[str]:
    name = " ".join(path)
    lines = [f"{'#' * min(depth, 6)} `{name}`", ""]
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines += ["```text", f"{name} {usage}".rstrip(), "```", ""]
    if command.help:
        lines += [click.unstyle(command.help).strip(), ""]
    params = [p for p in command.get_params(ctx) if not (isinstance(p, click.Option) and p.hidden)]
    if params:
        lines += ["| option | value | meaning |", "| --- | --- | --- |"]
        lines += [_param_row(p, ctx) for p in params]
        lines.append("")
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is None or sub.hidden:
                continue
            sub_ctx = click.Context(sub, info_name=sub_name, parent=ctx)
            lines += _section(sub, [*path, sub_name], sub_ctx, depth + 1)
    return lines


def render() -> str:
    ctx = click.Context(cli, info_name="captcha-queue")
    return "\n".join(_section(cli, ["captcha-queue"], ctx, 2)).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")

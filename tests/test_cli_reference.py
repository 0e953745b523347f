"""The CLI reference in the docs is generated from the commands: every command and option is in it."""

from __future__ import annotations

import click

from captcha_queue.cli import cli
from captcha_queue.cli.reference import render


def _commands(group: click.Group, path: str, ctx: click.Context) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        found.append((f"{path} {name}", command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{path} {name}", click.Context(command, info_name=name, parent=ctx))
    return found


def test_every_command_and_option_is_in_the_reference() -> None:
    text = render()
    ctx = click.Context(cli, info_name="captcha-queue")
    commands = _commands(cli, "captcha-queue", ctx)
    assert len(commands) > 10
    for path, command in commands:
        assert f"`{path}`" in text, path
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert f"`{param.opts[0]}`" in text, (path, param.opts[0])


def test_defaults_and_environment_variables_are_shown_and_sentinels_are_not() -> None:
    text = render()
    assert "(default: `2000`)" in text  # demo --tasks
    assert "UNSET" not in text
    assert "Sentinel." not in text  # click's own sentinel values (Sentinel.UNSET), not Redis Sentinel

"""Every `balsam-mq` command, found by walking the typer app (so new ones are held to it too):
each option and argument has help text, and each command's help ends with an example."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from balsam_mq.cli import app


def commands() -> Iterator[tuple[str, Any]]:
    """(`group command`, the click command) of every leaf command, visible or not."""

    root = typer.main.get_command(app)
    ctx = typer.Context(root)

    def walk(command: Any, path: list[str]) -> Iterator[tuple[str, Any]]:
        if isinstance(command, TyperGroup):
            for name in command.list_commands(ctx):
                yield from walk(command.get_command(ctx, name), [*path, name])
        else:
            yield " ".join(path), command

    yield from walk(root, [])


COMMANDS = dict(commands())


def test_the_walk_finds_every_group() -> None:
    assert {"job ls", "events", "queue ls", "user ls", "report nodes", "login"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help_and_the_help_ends_with_an_example(name: str) -> None:
    command = COMMANDS[name]
    lines = (command.help or "").strip().splitlines()
    assert lines and lines[-1].strip().startswith(f"Example:  balsam-mq {name}"), lines[-1:]
    for param in command.params:
        if isinstance(param, TyperOption | TyperArgument) and not param.hidden:
            assert param.help, f"balsam-mq {name}: {param.name} has no help text"

"""Every `balsam-mq` command, found by walking the typer app (so new ones are held to it too):
each option and argument has help text, and each command's help ends with an example."""

from __future__ import annotations

import pytest
from cli_helpers import commands
from typer.core import TyperArgument, TyperOption

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

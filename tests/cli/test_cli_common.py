"""What every command shares: help with an example, one-line errors, output on a terminal."""

from __future__ import annotations

import re

import pytest
from cli_helpers import Cli, World, adders
from typer.testing import CliRunner

from balsam_mq.cli import app

COMMANDS = [
    ["site", "rm"],
    ["site", "sync"],
    ["app", "ls"],
    ["job", "ls"],
    ["job", "create"],
    ["job", "modify"],
    ["job", "rm"],
    ["job", "show"],
    ["events"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert f"Example:  balsam-mq {' '.join(command)}" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["job", "ls", "--bogus"], "error: No such option: --bogus (see '"),
        (["job", "show"], "error: Missing argument 'JOB_ID'. (see '"),
        (
            ["job", "show", "x"],
            "error: Invalid value for 'JOB_ID': Input should be a valid integer",
        ),
        (["job", "ls", "--limit", "-1"], "error: Invalid value for '--limit'"),
        (["nosuch"], "error: No such command 'nosuch'."),
        (
            ["launcher", "--site", "x", "-t", "1", "--app-run", "foo"],
            "error: --app-run: Input should be 'mpich', 'openmpi', 'srun' or 'local'",
        ),
    ],
)
def test_usage_errors_are_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(message), result.stderr


def test_a_group_without_command_shows_its_help() -> None:
    result = CliRunner().invoke(app, ["job"])
    assert "modify" in result.stdout + result.stderr


async def test_tables_are_rich_on_a_terminal_and_plain_lines_elsewhere(
    cli: Cli, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await adders(2, tags={"run": "H2O"})
    plain = (await cli.ok("job", "ls")).stdout.splitlines()
    assert plain[0].split("\t") == [
        "1",
        "polaris",
        "Adder",
        "add/0",
        "PREPROCESSED",
        "run=H2O",
        plain[0].split("\t")[-1],
    ]
    assert len(plain) == 2
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich treats the captured output as a terminal
    out = (await cli.ok("job", "ls")).stdout
    assert "\x1b[1m" in out  # bold header
    rich = re.sub(r"\x1b\[[0-9;]*m", "", out).splitlines()
    assert rich[0].split() == ["id", "site", "app", "workdir", "state", "tags", "updated"]
    assert "\t" not in rich[1] and rich[1].split()[:6] == [
        "1",
        "polaris",
        "Adder",
        "add/0",
        "PREPROCESSED",
        "run=H2O",
    ]


async def test_user_text_is_never_taken_for_markup(
    cli: Cli, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    out = re.sub(r"\x1b\[[0-9;]*m", "", (await cli.ok("app", "ls")).stdout)
    assert "x, [y]" in out and "input_filename, [mode]" in out

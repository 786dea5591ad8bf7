"""What every `balsam-mq` command shares: the error boundary and output that degrades off a TTY."""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from balsam_mq.errors import BalsamError


class BalsamGroup(TyperGroup):
    """The root command group: a `BalsamError` from any command, in any subgroup, becomes
    `error: <message>` on stderr and exit code 1 instead of a traceback."""

    # Recent typer vendors click: `Any` avoids naming its private Context class.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BalsamError as exc:
            fail(str(exc))


def fail(message: str) -> NoReturn:
    """Print `error: <first line>` (then any detail lines) to stderr and exit with 1."""
    reason, _, detail = message.partition("\n")
    typer.echo(f"error: {reason}", err=True)
    if detail:
        typer.echo(detail, err=True)
    raise typer.Exit(1)


def console() -> Console:
    """Rich output for a terminal; callers print plain lines when `is_terminal` is False."""
    return Console(highlight=False)

"""What `balsam-mq` commands print: rich tables, fields and a progress bar on a terminal,
plain lines and JSON otherwise (stdout stays parseable; remarks go to stderr)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.text import Text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def console(*, stderr: bool = False) -> Console:
    """Rich output for a terminal; callers print plain lines when `is_terminal` is False."""
    from rich.console import Console  # the parts of rich a command uses are imported by it

    return Console(highlight=False, stderr=stderr)


def plain(value: Any) -> Any:
    """``json.dumps`` default: datetimes as ISO 8601, sets as lists, anything else as repr."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


def print_json(data: Any, *, lines: bool = False) -> None:
    """Indented JSON, or one compact line (``lines``: a stream of documents)."""
    text = json.dumps(data, default=plain, indent=None if lines else 2)
    typer.echo(text)
    sys.stdout.flush()


def when(moment: datetime | None) -> str:
    """A timestamp in local time, to the second."""
    return "-" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def span(seconds: float) -> str:
    """A duration for people: ``0.25s``, ``42s``, ``3m 05s``, ``2h 07m``, ``3d 4h``."""
    if seconds < 10:
        return f"{seconds:.2g}s" if seconds < 1 else f"{seconds:.1f}s"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


STATE_STYLES = {
    "JOB_FINISHED": "green",
    "FAILED": "bold red",
    "RUNNING": "cyan",
    "RUN_DONE": "cyan",
    "RUN_ERROR": "red",
    "RUN_TIMEOUT": "yellow",
    "RESTART_READY": "yellow",
    "AWAITING_PARENTS": "dim",
}


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


Cell = str | Text


def _text(cell: Cell) -> Text:
    """A cell as rich text: user data such as ``[y]`` or ``{'a': [1]}`` is never markup."""
    return cell if isinstance(cell, Text) else Text(cell)


def build_table(columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> Table:
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_text(cell) for cell in row))
    return table


def show_table(columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> None:
    """A rich table on a terminal; else one tab-separated line per row, no header."""
    out = console()
    if not out.is_terminal:
        for row in rows:
            typer.echo("\t".join(cell.plain if isinstance(cell, Text) else cell for cell in row))
        sys.stdout.flush()
        return
    out.print(build_table(columns, rows))


def show_fields(pairs: Iterable[tuple[str, Cell]]) -> None:
    """``name: value`` lines (aligned and styled on a terminal)."""
    out = console()
    if not out.is_terminal:
        for name, value in pairs:
            typer.echo(f"{name}: {value.plain if isinstance(value, Text) else value}")
        return
    from rich.table import Table

    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in pairs:
        table.add_row(name, _text(value))
    out.print(table)


def note(message: str) -> None:
    """A remark for people (stderr, so stdout stays parseable)."""
    typer.echo(message, err=True)


@contextmanager
def progress(
    description: str, total: int | None, *, enabled: bool = True
) -> Iterator[Callable[[int], None]]:
    """A transient progress bar on stderr while the block runs (only on a terminal, and
    not when ``enabled`` is false, e.g. with --json); yields ``advance(n)``."""
    err = console(stderr=True)
    if not enabled or not err.is_terminal or not console().is_terminal:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[ProgressColumn] = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
    if total is not None:
        columns.append(MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)

"""What every `balsam-mq` command shares: the error boundary, the SDK connection, input
parsing (k=v pairs, JSON), and output that degrades off a TTY (tables, JSON, progress)."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from copy import copy
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, get_args, get_origin

import anyio
import typer
from rich.text import Text
from typer.core import TyperGroup
from typer.models import OptionInfo

from balsam_mq.errors import BalsamError, QueryError
from balsam_mq.settings import load_settings

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

T = TypeVar("T")


class BalsamGroup(TyperGroup):
    """The root command group: a `BalsamError` from any command, in any subgroup, becomes
    `error: <message>` on stderr and exit code 1 instead of a traceback; a usage error
    (unknown option, missing or malformed argument, a filter or field the query refuses:
    `QueryError`) becomes one `error:` line and exit code 2."""

    # Recent typer vendors click: `Any` avoids naming its private Context class.
    def make_context(self, info_name: Any, args: Any, parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except typer.TyperException as exc:
            usage_fail(exc)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except QueryError as exc:  # what the user typed names no field, state or operator
            fail(str(exc), code=2)
        except BalsamError as exc:
            fail(str(exc))
        except typer.TyperException as exc:
            usage_fail(exc)


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print `error: <first line>` (then any detail lines) to stderr and exit with ``code``."""
    reason, _, detail = message.partition("\n")
    typer.echo(f"error: {reason}", err=True)
    if detail:
        typer.echo(detail, err=True)
    raise typer.Exit(code)


def usage_fail(exc: typer.TyperException) -> NoReturn:
    """A click usage error as one line (`error: ... (see '<command> --help')`)."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # shows the help: leave it to typer
        raise exc
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    message = " ".join(exc.format_message().split()).removeprefix("Invalid value: ")
    typer.echo(f"error: {message}{hint}", err=True)
    raise typer.Exit(getattr(exc, "exit_code", 2))


def console(*, stderr: bool = False) -> Console:
    """Rich output for a terminal; callers print plain lines when `is_terminal` is False."""
    from rich.console import Console  # the parts of rich a command uses are imported by it

    return Console(highlight=False, stderr=stderr)


# --- the SDK ----------------------------------------------------------------------------


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` on a new event loop with an SDK client connected as the environment says.

    Library log records are dropped: a failure reaches the user as one `error:` line, not
    also as aio-pika's or pymongo's log output."""
    from balsam_mq.sdk import connect

    async def body() -> T:
        async with connect(load_settings()):
            return await main()

    root, quiet = logging.getLogger(), logging.NullHandler()
    if not root.handlers:
        root.addHandler(quiet)
    try:
        return anyio.run(body)
    finally:
        root.removeHandler(quiet)


def run_until_interrupted(main: Callable[[], Awaitable[None]], seconds: float | None) -> None:
    """:func:`run` for commands that go on until Ctrl-C (or ``seconds``): both end quietly."""

    async def bounded() -> None:
        with anyio.move_on_after(seconds):
            await main()

    try:
        run(bounded)
    except KeyboardInterrupt:
        pass


# --- options ----------------------------------------------------------------------------

JSON_HELP = "Print JSON for scripts (one document on stdout)."
# every command that prints a result takes it (a test walks the app); `print_json` prints
JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


def with_options(
    declared: Callable[..., Any], *, into: str, rename: Mapping[str, str] | None = None
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A command decorator: the command's parameter ``into`` stands for the options declared
    once as the parameters of ``declared``, and receives what ``declared`` returns for them.
    ``rename`` spells an option otherwise in this command (``{"--state": "--from-state"}``),
    where the command gives its usual name another meaning.

    Example::

        @app.command()
        @with_options(_filters, into="filters")
        def rm(filters: JobFilters, yes: YesOption = False) -> None: ...
    """
    renamed = dict(rename or {})
    renames = dict(renamed)  # _renamed takes out each name it finds
    shared = inspect.signature(declared, eval_str=True).parameters
    # the shared options' parameter names, kept apart from the command's own
    names = {f"{into}__{name}": name for name in shared}
    options = [
        param.replace(
            name=f"{into}__{name}",
            kind=inspect.Parameter.KEYWORD_ONLY,
            annotation=_renamed(param.annotation, renames),
        )
        for name, param in shared.items()
    ]
    if renames:
        raise ValueError(f"{declared.__name__} declares no option {', '.join(renames)}")

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command, eval_str=True)
        if into not in own.parameters:
            raise ValueError(f"{command.__name__} has no parameter {into!r}")
        params: list[inspect.Parameter] = []
        for param in own.parameters.values():
            if param.name == into:
                params += options
            else:
                params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY))

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            values = {names[key]: kwargs.pop(key) for key in names}
            try:
                chosen = declared(**values)
            except typer.BadParameter as exc:  # name the option as this command spells it
                if isinstance(exc.param_hint, str):
                    exc.param_hint = renamed.get(exc.param_hint, exc.param_hint)
                raise
            command(**kwargs, **{into: chosen})

        signature = own.replace(parameters=params)
        wrapper.__signature__ = signature  # type: ignore[attr-defined]  # what typer reads
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


def _renamed(annotation: Any, renames: dict[str, str]) -> Any:
    """``Annotated[T, typer.Option("--a", ...)]`` with the names ``renames`` gives (and
    removes from it) in place of its own."""
    if get_origin(annotation) is not Annotated:
        return annotation
    base, *extras = get_args(annotation)
    out: list[Any] = []
    for extra in extras:
        if isinstance(extra, OptionInfo):
            # in Annotated, typer.Option's first positional argument is the first name
            first = () if extra.default is ... else (extra.default,)
            decls = (*first, *(extra.param_decls or ()))
            if any(d in renames for d in decls):
                extra = copy(extra)
                extra.default = ...
                extra.param_decls = tuple(renames.pop(d, d) for d in decls)
        out.append(extra)
    return Annotated[(base, *out)]


# --- input ------------------------------------------------------------------------------


def site_filter(what: str) -> Any:
    """The ``--site`` option of a command that lists or counts ``what`` of one site or, with
    ``all``, of every site: ``site: Annotated[str | None, site_filter("events")] = None``."""
    return typer.Option(
        "--site", "-s", help=f"Only this site's {what} (name or id; 'all': every site)."
    )


def parse_pairs(
    items: Iterable[str] | None, option: str, *, json_values: bool = False
) -> dict[str, Any]:
    """``["a=1", "b=x"]`` as a dict; a value is JSON when it parses (``json_values``),
    else the text. An item without ``=`` or with an empty key is a usage error."""
    from balsam_mq.domain.queries import json_or_text

    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} must look like key=value", param_hint=option)
        out[key.strip()] = json_or_text(value) if json_values else value
    return out


def parse_json_object(text: str | None, option: str) -> dict[str, Any]:
    """A JSON object given on the command line; anything else is a usage error."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object ({...})", param_hint=option)
    return value


_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def moment(text: str, option: str) -> datetime:
    """A time typed by the user: ISO 8601 (naive means local time) or an age (``2h`` ago)."""
    from balsam_mq.domain.models import utcnow

    age = _AGE.fullmatch(text.strip())
    try:
        if age:
            return utcnow() - timedelta(**{_UNITS[age[2]]: float(age[1])})
        parsed = datetime.fromisoformat(text.strip())
    except OverflowError:
        raise typer.BadParameter(f"{text!r} is too far back", param_hint=option) from None
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither a time (2024-05-01T12:00) nor an age (30m, 2h, 1d)",
            param_hint=option,
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.astimezone()


def state_name(text: str) -> str:
    """A job state typed in any case (``running``) as its name (``RUNNING``); text that names
    no state is returned as typed, for the query to refuse with the list of states."""
    from balsam_mq.domain.states import JobState

    upper = text.strip().upper()
    return upper if upper in JobState.__members__ else text


# --- output -----------------------------------------------------------------------------


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


def confirm(question: str, yes: bool) -> None:
    """Go on if ``yes`` or the user agrees; else stop with an error (nothing was done)."""
    if yes:
        return
    try:
        agreed = typer.confirm(question, default=False, err=True)
    except typer.Abort:
        agreed = False
    if not agreed:
        fail("not confirmed: nothing was changed (pass --yes to skip the question)")

"""What every `balsam-mq` command shares: the error boundary, the SDK connection, options
declared once and input parsing (k=v pairs, JSON, times), and the confirmation question.
What commands print is `cli/output.py`'s."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from copy import copy
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, get_args, get_origin

import anyio
import typer
from typer.core import TyperGroup
from typer.models import OptionInfo

from balsam_mq.errors import BalsamError, QueryError
from balsam_mq.settings import load_settings

if TYPE_CHECKING:
    pass

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

"""Command templates: Jinja2 parsing (which parameters a template names) and rendering.

Jinja2 is imported on first use: a program that only lists jobs never needs it."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from balsam_mq.domain import App
from balsam_mq.errors import AppError, JobError

if TYPE_CHECKING:
    from jinja2 import Environment, Template


@lru_cache(maxsize=1)
def _env() -> Environment:
    from jinja2 import Environment, StrictUndefined

    return Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


def template_variables(label: str, template: str) -> set[str]:
    """The names a template uses without defining them; a syntax error names the app."""
    from jinja2 import TemplateSyntaxError, meta

    try:
        return set(meta.find_undeclared_variables(_env().parse(template)))
    except TemplateSyntaxError as exc:
        raise AppError(f"{label}: command_template line {exc.lineno}: {exc.message}") from None


def render_command(app: App, parameters: Mapping[str, Any], *, job: str = "job") -> str:
    """The command line of ``app`` for a job's ``parameters`` (spec defaults filled in)."""
    if app.command_template is None:
        raise AppError(f"App {app.name!r} has no command_template (it defines run())")
    from jinja2 import UndefinedError

    values = {n: s.default for n, s in app.parameters.items() if not s.required}
    values.update(parameters)
    try:
        return _compiled(app.command_template).render(values)
    except UndefinedError as exc:
        raise JobError(f"{job} of App {app.name!r}: command_template: {exc.message}") from None


@lru_cache(maxsize=256)
def _compiled(template: str) -> Template:
    """Templates are compiled once: a launcher renders the same few for every job."""
    return _env().from_string(template)

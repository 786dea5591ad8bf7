"""Command templates: Jinja2 parsing (which parameters a template names) and rendering."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import Environment, StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta

from balsam_mq.domain import App
from balsam_mq.errors import AppError, JobError

_ENV = Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


def template_variables(label: str, template: str) -> set[str]:
    """The names a template uses without defining them; a syntax error names the app."""
    try:
        return set(meta.find_undeclared_variables(_ENV.parse(template)))
    except TemplateSyntaxError as exc:
        raise AppError(f"{label}: command_template line {exc.lineno}: {exc.message}") from None


def render_command(app: App, parameters: Mapping[str, Any], *, job: str = "job") -> str:
    """The command line of ``app`` for a job's ``parameters`` (spec defaults filled in)."""
    if app.command_template is None:
        raise AppError(f"App {app.name!r} has no command_template (it defines run())")
    values = {n: s.default for n, s in app.parameters.items() if not s.required}
    values.update(parameters)
    try:
        return _compiled(app.command_template).render(values)
    except UndefinedError as exc:
        raise JobError(f"{job} of App {app.name!r}: command_template: {exc.message}") from None


@lru_cache(maxsize=256)
def _compiled(template: str) -> Template:
    """Templates are compiled once: a launcher renders the same few for every job."""
    return _ENV.from_string(template)

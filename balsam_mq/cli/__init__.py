"""The `balsam-mq` command line: one typer app assembled from one module per command group,
each module imported only when one of its commands runs (or a help page lists them)."""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from balsam_mq.cli.common import BalsamGroup

# (module under balsam_mq.cli, group name); None puts the module's commands at the top level.
_GROUPS: list[tuple[str, str | None]] = [
    ("stack", None),
    ("demo", None),
    ("site", "site"),
    ("app", "app"),
    ("job", "job"),
    ("events", None),
    ("launcher", None),
    ("queue", "queue"),
    ("dead", "dead"),
    ("gateway", None),
    ("user", "user"),
    ("report", "report"),
    ("transfer", "transfer"),
]


def _group(module: str) -> TyperGroup:
    typer_app: typer.Typer = importlib.import_module(f"balsam_mq.cli.{module}").app
    # importing the submodule `app` binds it as this package's `app`: put the Typer app back,
    # so that `from balsam_mq.cli import app` means the command line whatever ran before
    globals()["app"] = root_app
    return typer.main.get_group(typer_app)


class _Root(BalsamGroup):
    """The root group: it finds a command in the modules of :data:`_GROUPS`, importing a
    group's module alone for a command of that group."""

    def list_commands(self, ctx: Any) -> list[str]:
        names: list[str] = []
        for module, name in _GROUPS:
            names += [name] if name is not None else list(_group(module).commands)
        return names

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        for module, name in _GROUPS:
            if name is not None and name == cmd_name:
                group = _group(module)
                group.name = name
                return group
        for module, name in _GROUPS:
            if name is None and cmd_name in (commands := _group(module).commands):
                return commands[cmd_name]
        return None


app = root_app = typer.Typer(
    name="balsam-mq",
    cls=_Root,
    help="Run ensembles of HPC jobs on RabbitMQ and MongoDB.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"balsam-mq {version('balsam_mq')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    # the commands come from _Root; a callback makes typer build a group for them
    pass


def main() -> None:
    """Console script entry point (`balsam-mq`)."""
    app()

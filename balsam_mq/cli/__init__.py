"""The `balsam-mq` command line: one typer app assembled from one module per command group."""

from __future__ import annotations

import typer

from balsam_mq.cli import app as app_cli
from balsam_mq.cli import demo, events, job, launcher, queue, site, stack
from balsam_mq.cli.common import BalsamGroup

app = typer.Typer(
    name="balsam-mq",
    cls=BalsamGroup,
    help="Run ensembles of HPC jobs on RabbitMQ and MongoDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (module's typer app, group name); None puts the module's commands at the top level.
_GROUPS: list[tuple[typer.Typer, str | None]] = [
    (stack.app, None),
    (demo.app, None),
    (site.app, "site"),
    (app_cli.app, "app"),
    (job.app, "job"),
    (events.app, None),
    (launcher.app, None),
    (queue.app, "queue"),
]
for group, name in _GROUPS:
    app.add_typer(group, name=name)


def main() -> None:
    """Console script entry point (`balsam-mq`)."""
    app()

"""`balsam-mq up | down | status`: start, stop and inspect the local MongoDB + RabbitMQ stack."""

from __future__ import annotations

import typer
from rich.table import Table

from balsam_mq import stack
from balsam_mq.cli.common import JsonOption, fail
from balsam_mq.cli.output import console, print_json
from balsam_mq.settings import load_settings

app = typer.Typer()


@app.command()
def up(as_json: JsonOption = False) -> None:
    """Start a local stack: a one-node MongoDB replica set, and RabbitMQ if none answers.

    Idempotent: what already runs is left alone.
    mongod keeps its data, log and pid in BALSAM_STACK_DIR (default ~/.balsam_mq/stack).
    --json prints the report of `status --json`, with what was done as its "actions".

    Example:  balsam-mq up && balsam-mq status
    """
    _show(stack.up(load_settings()), as_json=as_json)


@app.command()
def down(as_json: JsonOption = False) -> None:
    """Stop what `balsam-mq up` started (never a broker or database it found running).

    Data stays in BALSAM_STACK_DIR for the next `up`. --json prints the report of
    `status --json`, with what was done as its "actions".

    Example:  balsam-mq down
    """
    _show(stack.down(load_settings()), as_json=as_json)


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Report whether MongoDB and RabbitMQ answer; exit 1 if either is not ready.

    Example:  balsam-mq status --json
    """
    report = stack.status(load_settings())
    _show(report, as_json=as_json)
    if not report.ok:
        fail("stack not ready: " + "; ".join(report.problems()))


def _show(report: stack.StackStatus, *, as_json: bool) -> None:
    if as_json:
        print_json(report.to_dict())
        return
    out = console()
    if not out.is_terminal:
        for line in [*report.actions, *report.lines()]:
            typer.echo(line)
        return
    for action in report.actions:
        out.print(f"[bold]•[/] {action}", markup=True)
    table = Table(box=None, header_style="bold")
    table.add_column("service")
    table.add_column("state", no_wrap=True)
    table.add_column("started by up", no_wrap=True)
    table.add_column("url", overflow="fold")
    mongo, rabbit = report.mongo, report.rabbitmq
    table.add_row("MongoDB", _state(mongo.answering, mongo.is_primary), _yes(mongo.pid), mongo.url)
    table.add_row("RabbitMQ", _state(rabbit.answering), _yes(rabbit.started_by_us), rabbit.url)
    out.print(table)
    out.print(f"stack dir {report.stack_dir}", style="dim")


def _state(answering: bool, primary: bool | None = None) -> str:
    if not answering:
        return "[red]not answering[/]"
    if primary is False:
        return "[yellow]answering, not a writable primary[/]"
    return "[green]answering[/]" + (", PRIMARY" if primary else "")


def _yes(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"yes (pid {value})"
    return "yes" if value else "no"

"""`balsam-mq demo`: the one-command tour (local stack, site, agent, launcher, jobs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
import typer

from balsam_mq.cli.output import console
from balsam_mq.settings import load_settings

app = typer.Typer()


@app.command()
def demo(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Put the demo site here (default: a temporary directory)."),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the site, its jobs and the stack for exploring.")
    ] = False,
    hello: Annotated[int, typer.Option("--shell-jobs", min=1, help="Shell jobs.")] = 100,
    adds: Annotated[int, typer.Option("--python-jobs", min=1, help="Python run() jobs.")] = 100,
    energies: Annotated[
        int, typer.Option("--parsed-jobs", min=1, help="Jobs whose output a hook parses.")
    ] = 60,
    cores: Annotated[int, typer.Option("--slots", min=1, help="Launcher slots.")] = 4,
) -> None:
    """Run a few hundred demo jobs on a local site, agent and launcher; print a summary.

    Starts the local stack if needed, creates a demo site, runs a site agent and a
    launcher, submits shell, Python and postprocessed jobs (with dependencies), follows
    them live and prints results. What it started is stopped and removed unless --keep.

    Example:  balsam-mq demo --keep
    """
    from balsam_mq.demo.run import DemoOptions, print_report, run_demo

    out = console()
    options = DemoOptions(
        directory=directory.expanduser().resolve() if directory else None,
        keep=keep,
        hello=hello,
        adds=adds,
        energies=min(energies, hello * 10),
        cores=cores,
    )
    report = anyio.run(run_demo, load_settings(), options, out)
    print_report(report, out)

"""`balsam-mq report throughput | utilization | nodes`: series over time from the event log and
the batch jobs (``balsam_mq.analytics``), summarised, written as CSV, or plotted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from balsam_mq.cli.common import (
    JsonOption,
    moment,
    parse_pairs,
    run,
    site_filter,
)
from balsam_mq.cli.report_output import (
    Report,
    check_outputs,
    emit,
    level_facts,
    level_summary,
    throughput_facts,
    throughput_summary,
)

app = typer.Typer(
    help="Throughput, utilization and nodes over time: a summary, CSV or a plot.",
    no_args_is_help=True,
)

SiteOption = Annotated[
    str | None,
    site_filter("events"),
]
TagOption = Annotated[
    list[str] | None,
    typer.Option("--tag", help="Only events of jobs tagged key=value (repeatable)."),
]
AppOption = Annotated[
    str | None, typer.Option("--app", "-a", help="Only events of this app's jobs (name or id).")
]
BatchJobOption = Annotated[
    int | None,
    typer.Option("--batch-job", help="Only events of the jobs that ran in this batch job."),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Only events from this time on: ISO 8601 (local time unless it has an offset) "
        "or an age such as 30m, 2h, 1d.",
    ),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Only events before this time (as --since).")
]
PlotOption = Annotated[
    Path | None,
    typer.Option(
        "--plot", help="Write a step plot to this file (.png, .svg, .pdf; needs matplotlib)."
    ),
]
CsvOption = Annotated[
    str | None, typer.Option("--csv", help="Write time,value rows to this file ('-': stdout).")
]


@dataclass
class EventFilters:
    """The event selection of `report throughput` and `report utilization`, as typed."""

    site: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    app: str | None = None
    batch_job: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    async def resolve(self) -> dict[str, Any]:
        """``EventLog.objects.filter()`` keywords; an unknown site or app is an error."""
        from balsam_mq.sdk import App, Site

        out: dict[str, Any] = {}
        site_id = None
        if self.site is not None:
            site_id = out["site_id"] = (await Site.objects.lookup(self.site)).id
        if self.app is not None:
            out["app_id"] = [a.id for a in await App.objects.lookup(self.app, site=site_id)]
        if self.tags:
            out["tags"] = self.tags
        if self.batch_job is not None:
            out["batch_job_id"] = self.batch_job
        if self.since is not None:
            out["timestamp__gte"] = self.since
        if self.until is not None:
            out["timestamp__lt"] = self.until
        return out


def _filters(
    site: str | None,
    tags: list[str] | None,
    app_ref: str | None,
    batch_job: int | None,
    since: str | None,
    until: str | None,
) -> EventFilters:
    return EventFilters(
        site=None if site == "all" else site,
        tags={k: str(v) for k, v in parse_pairs(tags, "--tag").items()},
        app=app_ref,
        batch_job=batch_job,
        since=None if since is None else moment(since, "--since"),
        until=None if until is None else moment(until, "--until"),
    )


@app.command()
def throughput(
    state: Annotated[
        str,
        typer.Option("--state", "--to-state", help="Count the jobs that entered this state."),
    ] = "JOB_FINISHED",
    site: SiteOption = None,
    tags: TagOption = None,
    app_ref: AppOption = None,
    batch_job: BatchJobOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    plot: PlotOption = None,
    csv_path: CsvOption = None,
    as_json: JsonOption = False,
) -> None:
    """How many jobs had finished (or entered --state) over time.

    One point per event, counting 1, 2, 3, ...; filters of different kinds must all hold.
    Without --plot or --csv, prints a summary and the count at a few times; --json prints
    the summary and every point (the rows of --csv).

    Example:  balsam-mq report throughput --site polaris --since 1d --plot done.png
    """
    from balsam_mq.domain.states import parse_state

    try:
        to_state = parse_state(state).value
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--state") from None
    selection = _filters(site, tags, app_ref, batch_job, since, until)
    check_outputs(plot, csv_path, as_json)

    async def main() -> Report:
        from balsam_mq.analytics import throughput_report
        from balsam_mq.sdk import EventLog

        events = EventLog.objects.filter(**await selection.resolve())
        times, values = await throughput_report(events, to_state)
        return Report(
            title=f"Jobs that entered {to_state}",
            column=to_state,
            unit="jobs",
            times=times,
            values=values,
            empty=f"no job entered {to_state} in the events selected",
            facts=throughput_facts,
            summary=throughput_summary,
        )

    emit(run(main), plot, csv_path, as_json)


@app.command()
def utilization(
    node_weighting: Annotated[
        bool,
        typer.Option(
            "--node-weighting/--no-node-weighting",
            help="Count each job's nodes (num_nodes / node_packing_count), or count jobs.",
        ),
    ] = True,
    site: SiteOption = None,
    tags: TagOption = None,
    app_ref: AppOption = None,
    batch_job: BatchJobOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    plot: PlotOption = None,
    csv_path: CsvOption = None,
    as_json: JsonOption = False,
) -> None:
    """How many nodes (or jobs) were busy with RUNNING jobs over time.

    One point per time a job entered or left RUNNING. A job's stay that began before
    --since is not counted. Without --plot or --csv, prints a summary and the level at
    a few times; --json prints the summary and every point (the rows of --csv).

    Example:  balsam-mq report utilization --site polaris --tag run=H2O --csv busy.csv
    """
    selection = _filters(site, tags, app_ref, batch_job, since, until)
    check_outputs(plot, csv_path, as_json)
    unit = "nodes" if node_weighting else "jobs"

    async def main() -> Report:
        from balsam_mq.analytics import utilization_report
        from balsam_mq.sdk import EventLog

        events = EventLog.objects.filter(**await selection.resolve())
        times, values = await utilization_report(events, node_weighting)
        return Report(
            title=f"{unit.capitalize()} busy with running jobs",
            column=f"running_{unit}",
            unit=unit,
            times=times,
            values=values,
            empty="no job ran in the events selected",
            facts=level_facts,
            summary=level_summary(unit),
        )

    emit(run(main), plot, csv_path, as_json)


@app.command()
def nodes(
    site: Annotated[
        str | None,
        site_filter("batch jobs"),
    ] = None,
    plot: PlotOption = None,
    csv_path: CsvOption = None,
    as_json: JsonOption = False,
) -> None:
    """How many nodes the batch jobs held over time (from start to end of each).

    Without --plot or --csv, prints a summary and the count at a few times; --json prints
    the summary and every point (the rows of --csv).

    Example:  balsam-mq report nodes --site polaris --plot nodes.png
    """
    check_outputs(plot, csv_path, as_json)

    async def main() -> Report:
        from balsam_mq.analytics import available_nodes
        from balsam_mq.sdk import BatchJob, Site

        filters: dict[str, Any] = {}
        if site is not None and site != "all":
            filters["site_id"] = (await Site.objects.lookup(site)).id
        times, values = await available_nodes(BatchJob.objects.filter(**filters))
        return Report(
            title="Nodes held by batch jobs",
            column="nodes",
            unit="nodes",
            times=times,
            values=values,
            empty="no batch job has started",
            facts=level_facts,
            summary=level_summary("nodes"),
        )

    emit(run(main), plot, csv_path, as_json)

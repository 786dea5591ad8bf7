"""`balsam-mq report throughput | utilization | nodes`: series over time from the event log and
the batch jobs (``balsam_mq.analytics``), summarised, written as CSV, or plotted."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any, cast

import typer

from balsam_mq.analytics.series import samples, time_average, value_at
from balsam_mq.cli.common import (
    Cell,
    JsonOption,
    fail,
    moment,
    note,
    parse_pairs,
    print_json,
    run,
    show_fields,
    show_table,
    site_filter,
    when,
)

app = typer.Typer(
    help="Throughput, utilization and nodes over time: a summary, CSV or a plot.",
    no_args_is_help=True,
)

Number = int | float

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

ROWS = 10  # points of the series the terminal table shows


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


@dataclass
class Report:
    """A series and how to present it."""

    title: str
    column: str  # the value's name: the CSV column and the table header
    unit: str  # what the value counts: the plot's y label
    times: list[datetime]
    values: Sequence[Number]
    empty: str  # said when the series has no point
    facts: Callable[[Report], dict[str, Any]]  # what the summary says, as values
    summary: Callable[[Report], list[tuple[str, Cell]]]  # the facts for people


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
    _check_outputs(plot, csv_path, as_json)

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
            facts=_throughput_facts,
            summary=_throughput_summary,
        )

    _emit(run(main), plot, csv_path, as_json)


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
    _check_outputs(plot, csv_path, as_json)
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
            facts=_level_facts,
            summary=_level_summary(unit),
        )

    _emit(run(main), plot, csv_path, as_json)


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
    _check_outputs(plot, csv_path, as_json)

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
            facts=_level_facts,
            summary=_level_summary("nodes"),
        )

    _emit(run(main), plot, csv_path, as_json)


# --- output -------------------------------------------------------------------------------


def _check_outputs(plot: Path | None, csv_path: str | None, as_json: bool) -> None:
    """Refused before any query runs: stdout holds one output, and a plot needs matplotlib."""
    if as_json and csv_path == "-":
        raise typer.BadParameter("give --json or --csv -, not both: both print on stdout")
    if plot is not None:
        _require_matplotlib()


def _emit(report: Report, plot: Path | None, csv_path: str | None, as_json: bool) -> None:
    if not report.times:
        note(report.empty)
    if csv_path is not None:
        _write_csv(report, csv_path)
    if plot is not None:
        _write_plot(report, plot)
    if as_json:
        print_json(_json(report))
    elif csv_path is None and plot is None and report.times:
        show_fields(report.summary(report))
        show_table(["time", report.column], [[when(t), number(v)] for t, v in _points(report)])


def _json(report: Report) -> dict[str, Any]:
    """The series for scripts: the summary's facts and every point, as the CSV rows."""
    return {
        "series": report.column,
        "unit": report.unit,
        "summary": report.facts(report) if report.times else None,
        "rows": [
            {"time": t, report.column: _value(v)}
            for t, v in zip(report.times, report.values, strict=True)
        ],
    }


def _value(value: Number) -> Number:
    return int(value) if float(value).is_integer() else float(value)


def _points(report: Report) -> list[tuple[datetime, Number]]:
    """The series' points, or its values at :data:`ROWS` instants spread over it."""
    times, values = report.times, report.values
    if len(times) <= ROWS:
        return list(zip(times, values, strict=True))
    return [(t, value_at(times, values, t)) for t in samples(times, ROWS)]


def number(value: Number) -> str:
    """``3`` for a whole number (also as a float), else the float's shortest text."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def amount(value: float) -> str:
    """A measured quantity to three significant digits, never in exponent form."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _throughput_facts(report: Report) -> dict[str, Any]:
    first, last, count = report.times[0], report.times[-1], len(report.times)
    minutes = (last - first).total_seconds() / 60
    return {
        "jobs": count,
        "first": first,
        "last": last,
        "per_minute": count / minutes if minutes > 0 else None,
    }


def _throughput_summary(report: Report) -> list[tuple[str, Cell]]:
    facts = _throughput_facts(report)
    out: list[tuple[str, Cell]] = [("jobs", str(facts["jobs"])), ("first", when(facts["first"]))]
    out.append(("last", when(facts["last"])))
    if facts["per_minute"] is not None:
        out.append(("rate", f"{amount(facts['per_minute'])} per minute"))
    return out


def _level_facts(report: Report) -> dict[str, Any]:
    times, values = report.times, report.values
    peak = max(range(len(values)), key=lambda i: values[i])
    return {
        "from": times[0],
        "to": times[-1],
        "peak": {"value": _value(values[peak]), "time": times[peak]},
        "average": time_average(times, values),
        "last": _value(values[-1]),
    }


def _level_summary(unit: str) -> Callable[[Report], list[tuple[str, Cell]]]:
    def summary(report: Report) -> list[tuple[str, Cell]]:
        facts = _level_facts(report)
        peak = facts["peak"]
        return [
            ("from", when(facts["from"])),
            ("to", when(facts["to"])),
            ("peak", f"{number(peak['value'])} {unit} at {when(peak['time'])}"),
            ("average", f"{amount(facts['average'])} {unit}"),
            ("last", f"{number(facts['last'])} {unit}"),
        ]

    return summary


@contextmanager
def _opened(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    try:
        with open(path, "w", newline="", encoding="utf-8") as stream:
            yield stream
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")
    note(f"wrote {path}")


def _write_csv(report: Report, path: str) -> None:
    """``time`` (ISO 8601, UTC) and the value, one row per point."""
    with _opened(path) as stream:
        out = csv.writer(stream, lineterminator="\n")
        out.writerow(["time", report.column])
        out.writerows(
            [t.isoformat(), number(v)] for t, v in zip(report.times, report.values, strict=True)
        )


def _require_matplotlib() -> None:
    """Checked before any query runs: a missing matplotlib costs the user no wait."""
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        fail("--plot needs matplotlib: pip install matplotlib (or pip install 'balsam_mq[plot]')")


def _write_plot(report: Report, path: Path) -> None:
    """A step plot (``where="post"``: each value holds until the next point), drawn on a
    bare Figure: no pyplot, so no global state and no display needed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    local = [t.astimezone().replace(tzinfo=None) for t in report.times]
    ax.step(cast(Any, local), list(report.values), where="post")  # its stubs omit datetimes
    ax.set_title(report.title)
    ax.set_xlabel("local time")
    ax.set_ylabel(report.unit)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    fig.autofmt_xdate()
    try:
        fig.savefig(path)
    except (OSError, ValueError) as exc:
        fail(f"cannot write the plot {path}: {exc}")
    note(f"wrote {path}")

"""How a `balsam-mq report` series is given: a summary and a few points on the terminal,
JSON, CSV rows, or a step plot."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast

import typer

from balsam_mq.analytics.series import samples, time_average, value_at
from balsam_mq.cli.common import fail
from balsam_mq.cli.output import Cell, note, print_json, show_fields, show_table, when

Number = int | float
ROWS = 10  # points of the series the terminal table shows


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


def check_outputs(plot: Path | None, csv_path: str | None, as_json: bool) -> None:
    """Refused before any query runs: stdout holds one output, and a plot needs matplotlib."""
    if as_json and csv_path == "-":
        raise typer.BadParameter("give --json or --csv -, not both: both print on stdout")
    if plot is not None:
        _require_matplotlib()


def emit(report: Report, plot: Path | None, csv_path: str | None, as_json: bool) -> None:
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


def throughput_facts(report: Report) -> dict[str, Any]:
    first, last, count = report.times[0], report.times[-1], len(report.times)
    minutes = (last - first).total_seconds() / 60
    return {
        "jobs": count,
        "first": first,
        "last": last,
        "per_minute": count / minutes if minutes > 0 else None,
    }


def throughput_summary(report: Report) -> list[tuple[str, Cell]]:
    facts = throughput_facts(report)
    out: list[tuple[str, Cell]] = [("jobs", str(facts["jobs"])), ("first", when(facts["first"]))]
    out.append(("last", when(facts["last"])))
    if facts["per_minute"] is not None:
        out.append(("rate", f"{amount(facts['per_minute'])} per minute"))
    return out


def level_facts(report: Report) -> dict[str, Any]:
    times, values = report.times, report.values
    peak = max(range(len(values)), key=lambda i: values[i])
    return {
        "from": times[0],
        "to": times[-1],
        "peak": {"value": _value(values[peak]), "time": times[peak]},
        "average": time_average(times, values),
        "last": _value(values[-1]),
    }


def level_summary(unit: str) -> Callable[[Report], list[tuple[str, Cell]]]:
    def summary(report: Report) -> list[tuple[str, Cell]]:
        facts = level_facts(report)
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

"""Step series over time, pure: counts from ordered events, levels from signed changes, and the
readings a summary takes of a series (its value at an instant, its time average).

A series is ``(times, values)``: ``values[i]`` holds from ``times[i]`` until the next time
(a step plot with ``where="post"``). Nothing here does I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any, TypeVar

Number = int | float | Fraction
N = TypeVar("N", int, float, Fraction)


@dataclass(frozen=True)
class Mark:
    """A change of level: ``key`` starts (``+1``) or stops (``-1``) counting at ``time``."""

    time: datetime
    key: int
    sign: int


def cumulative(times: Iterable[datetime]) -> tuple[list[datetime], list[int]]:
    """One point per time (in the order given): 1, 2, 3, ..."""
    out = list(times)
    return out, list(range(1, len(out) + 1))


def spans(enters: Iterable[Mapping[str, Any]], leaves: Iterable[Mapping[str, Any]]) -> list[Mark]:
    """The marks of ``job_id``'s stays in a state, from the events that entered it and those
    that left it (rows of ``job_id``, ``seq`` and ``timestamp``; two lists each ordered by
    time merge at the cost of one pass), in time order.

    A job is counted from its entry to the move out after it, once per stay (a restarted
    job has several). A move out whose entry the rows do not hold (it came before the
    query's window) is left out, so a level never drops below zero; a stay with no move out
    yet lasts past the end.
    """
    marked = sorted(
        [*((_order(r), 1, r) for r in enters), *((_order(r), -1, r) for r in leaves)],
        key=lambda item: item[0],
    )
    inside: set[int] = set()
    out: list[Mark] = []
    for _, sign, row in marked:
        key = row["job_id"]
        if sign > 0 and key not in inside:
            inside.add(key)
        elif sign < 0 and key in inside:
            inside.discard(key)
        else:
            continue
        out.append(Mark(row["timestamp"], key, sign))
    return out


def _order(row: Mapping[str, Any]) -> tuple[datetime, int, int]:
    # a job's own events in the order they happened, even at one timestamp
    seq = row.get("seq")
    return row["timestamp"], row["job_id"], -1 if seq is None else seq


def levels(
    marks: Iterable[Mark], weights: Mapping[int, Number] | None = None
) -> tuple[list[datetime], list[Fraction]]:
    """The running sum of ``marks`` (time-ordered), each weighing ``weights[key]`` (1 when
    absent): one point per distinct time, holding the level after every change at it (so
    changes at one instant never show a level that did not exist)."""
    times: list[datetime] = []
    values: list[Fraction] = []
    total = Fraction(0)
    weights = weights or {}
    for mark in marks:
        total += mark.sign * Fraction(weights.get(mark.key, 1))
        if times and times[-1] == mark.time:
            values[-1] = total
        else:
            times.append(mark.time)
            values.append(total)
    return times, values


def value_at(times: Sequence[datetime], values: Sequence[N], moment: datetime) -> N | int:
    """The series' value at ``moment`` (0 before its first point)."""
    index = bisect_right(times, moment)
    return values[index - 1] if index else 0


def time_average(times: Sequence[datetime], values: Sequence[Number]) -> float:
    """The mean level between the first and the last point (the last value if they meet)."""
    if not times:
        return 0.0
    span = (times[-1] - times[0]).total_seconds()
    if span <= 0:
        return float(values[-1])
    area = sum(
        float(values[i]) * (times[i + 1] - times[i]).total_seconds() for i in range(len(times) - 1)
    )
    return area / span


def samples(times: Sequence[datetime], count: int) -> list[datetime]:
    """``count`` instants evenly spread from the first time to the last, both included
    (the one time there is, if they are all the same)."""
    if not times:
        return []
    start, span = times[0], times[-1] - times[0]
    if count < 2 or not span:
        return [times[-1]]
    return [start + span * i / (count - 1) for i in range(count)]

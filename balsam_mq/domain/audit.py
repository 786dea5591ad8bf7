"""The invariants every run keeps, checked over jobs' stored event histories.

For each job: its history starts with its creation and is a chain of legal moves
(each event leaves the state the one before entered, by an actor the transition table
allows), no event is recorded twice, and the job document's state is its last event's.
At the end of a run every job is also terminal. Tests and fault benchmarks share it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from balsam_mq.domain.models import Event
from balsam_mq.domain.states import TERMINAL_STATES, JobState, is_legal


@dataclass
class Audit:
    """What :func:`audit` found: final states, and each broken invariant, by job."""

    jobs: int = 0
    final: Counter[str] = field(default_factory=Counter)  # state -> jobs in it
    problems: dict[int, list[str]] = field(default_factory=dict)
    repeated: int = 0  # events recorded twice (a transition applied again)
    stuck: list[int] = field(default_factory=list)  # not terminal (when required)

    @property
    def ok(self) -> bool:
        return not self.problems

    def _add(self, job_id: int, problem: str) -> None:
        self.problems.setdefault(job_id, []).append(problem)

    def describe(self, most: int = 10) -> str:
        """The problems, one line per job (the first ``most``)."""
        lines = [f"job {j}: {'; '.join(p)}" for j, p in sorted(self.problems.items())[:most]]
        if len(self.problems) > most:
            lines.append(f"... and {len(self.problems) - most} more jobs")
        return "\n".join(lines) or "no problems"


def audit(
    histories: Mapping[int, Sequence[Event]],
    states: Mapping[int, JobState | str],
    *,
    terminal: bool = True,
) -> Audit:
    """Check every job of ``histories`` (events oldest first) against its stored state
    ``states[job_id]``; with ``terminal``, a job not in JOB_FINISHED or FAILED is stuck."""
    report = Audit(jobs=len(histories))
    for job_id, events in histories.items():
        state = states.get(job_id)
        if state is None:
            report._add(job_id, "no job document")
            continue
        report.final[str(state)] += 1
        if not events:
            report._add(job_id, "no events")
            continue
        _check_chain(report, job_id, events)
        if events[-1].to_state != str(state):
            report._add(job_id, f"state {state} but last event enters {events[-1].to_state}")
        if terminal and JobState(state) not in TERMINAL_STATES:
            report.stuck.append(job_id)
            report._add(job_id, f"not terminal: {state}")
    return report


def _check_chain(report: Audit, job_id: int, events: Sequence[Event]) -> None:
    if events[0].from_state not in (None, JobState.CREATED.value):
        report._add(job_id, f"history starts from {events[0].from_state}, not its creation")
    seen: set[int] = set()
    for before, event in zip([None, *events], events, strict=False):
        if event.seq is not None:
            if event.seq in seen:
                report.repeated += 1
                report._add(job_id, f"event {event.seq} recorded twice")
            seen.add(event.seq)
        if before is not None and event.from_state != before.to_state:
            if (event.from_state, event.to_state) == (before.from_state, before.to_state):
                report.repeated += 1
                report._add(job_id, f"{event.from_state} -> {event.to_state} applied twice")
            else:
                report._add(
                    job_id,
                    f"{event.from_state} -> {event.to_state} follows an event entering "
                    f"{before.to_state}",
                )
        if event.from_state is not None and not is_legal(
            JobState(event.from_state), JobState(event.to_state), event.by
        ):
            by = event.by.value if event.by else "?"
            report._add(job_id, f"illegal move {event.from_state} -> {event.to_state} by {by}")

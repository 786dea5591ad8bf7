"""The invariant checker: legal chains pass; repeats, illegal moves, mismatches, stuck jobs fail."""

from __future__ import annotations

from balsam_mq.domain import Actor, Event
from balsam_mq.domain.audit import audit

A = Actor
PATH = [
    ("CREATED", "READY", A.CLIENT),
    ("READY", "STAGED_IN", A.STAGE_IN),
    ("STAGED_IN", "PREPROCESSED", A.PREPROCESS),
    ("PREPROCESSED", "RUNNING", A.LAUNCHER),
    ("RUNNING", "RUN_ERROR", A.LAUNCHER),
    ("RUN_ERROR", "RESTART_READY", A.ERROR),
    ("RESTART_READY", "RUNNING", A.LAUNCHER),  # a second run is legal, not a repeat
    ("RUNNING", "RUN_DONE", A.LAUNCHER),
    ("RUN_DONE", "POSTPROCESSED", A.POSTPROCESS),
    ("POSTPROCESSED", "STAGED_OUT", A.STAGE_OUT),
    ("STAGED_OUT", "JOB_FINISHED", A.STAGE_OUT),
]


def _events(job_id: int, moves: list[tuple[str, str, Actor]]) -> list[Event]:
    return [
        Event(site_id=1, job_id=job_id, from_state=f, to_state=t, by=by, seq=i + 1)
        for i, (f, t, by) in enumerate(moves)
    ]


def test_a_legal_history_ending_terminal_passes() -> None:
    report = audit({1: _events(1, PATH)}, {1: "JOB_FINISHED"})
    assert report.ok, report.describe()
    assert report.final == {"JOB_FINISHED": 1}
    assert report.repeated == 0


def test_a_transition_applied_twice_is_counted_as_repeated() -> None:
    moves = [*PATH[:4], PATH[3], *PATH[4:]]
    events = _events(1, moves)
    report = audit({1: events}, {1: "JOB_FINISHED"})
    assert report.repeated == 1
    assert "PREPROCESSED -> RUNNING applied twice" in report.describe()


def test_illegal_moves_mismatched_states_and_stuck_jobs_are_reported() -> None:
    illegal = _events(1, [PATH[0], ("READY", "RUNNING", A.LAUNCHER)])
    mismatched = _events(2, PATH)
    stuck = _events(3, PATH[:5])
    report = audit(
        {1: illegal, 2: mismatched, 3: stuck, 4: []},
        {1: "RUNNING", 2: "FAILED", 3: "RUN_ERROR", 4: "READY"},
    )
    assert not report.ok
    text = report.describe()
    assert "job 1: illegal move READY -> RUNNING by launcher" in text
    assert "job 2: state FAILED but last event enters JOB_FINISHED" in text
    assert "job 3: not terminal: RUN_ERROR" in text
    assert "job 4: no events" in text
    assert report.stuck == [1, 3]
    # mid-run, non-terminal jobs are fine
    assert audit({3: stuck}, {3: "RUN_ERROR"}, terminal=False).ok

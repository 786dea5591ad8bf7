"""Job states and the one transition table: which state changes are legal and who makes them."""

from __future__ import annotations

from enum import StrEnum

from balsam_mq.errors import InvalidTransition


class JobState(StrEnum):
    CREATED = "CREATED"
    AWAITING_PARENTS = "AWAITING_PARENTS"
    READY = "READY"
    STAGED_IN = "STAGED_IN"
    PREPROCESSED = "PREPROCESSED"
    RUNNING = "RUNNING"
    RUN_DONE = "RUN_DONE"
    RUN_ERROR = "RUN_ERROR"
    RUN_TIMEOUT = "RUN_TIMEOUT"
    RESTART_READY = "RESTART_READY"
    POSTPROCESSED = "POSTPROCESSED"
    STAGED_OUT = "STAGED_OUT"
    JOB_FINISHED = "JOB_FINISHED"
    FAILED = "FAILED"


class Actor(StrEnum):
    """Who performs a transition (recorded on each event)."""

    CLIENT = "client"  # job creation through the SDK or CLI
    USER = "user"  # an explicit state change requested by a user
    RESOLVER = "resolver"  # dependency resolver
    STAGE_IN = "stage_in"
    PREPROCESS = "preprocess"
    LAUNCHER = "launcher"
    POSTPROCESS = "postprocess"
    ERROR = "error"
    TIMEOUT = "timeout"
    STAGE_OUT = "stage_out"
    REAPER = "reaper"  # site agent: RUNNING jobs of a dead launcher session
    REPLAY = "replay"  # a parked message replayed: its jobs return to where they were


S = JobState
A = Actor

# from-state -> {to-state: actors allowed to make that move}
TRANSITIONS: dict[JobState, dict[JobState, frozenset[Actor]]] = {
    S.CREATED: {
        S.READY: frozenset({A.CLIENT}),
        S.AWAITING_PARENTS: frozenset({A.CLIENT}),
        S.FAILED: frozenset({A.CLIENT, A.RESOLVER}),
    },
    S.AWAITING_PARENTS: {
        S.READY: frozenset({A.RESOLVER}),
        S.FAILED: frozenset({A.RESOLVER, A.USER}),
    },
    S.READY: {
        S.STAGED_IN: frozenset({A.STAGE_IN}),
        S.FAILED: frozenset({A.STAGE_IN, A.USER}),
    },
    S.STAGED_IN: {
        S.PREPROCESSED: frozenset({A.PREPROCESS}),
        S.FAILED: frozenset({A.PREPROCESS, A.USER}),
    },
    S.PREPROCESSED: {
        S.RUNNING: frozenset({A.LAUNCHER}),
        S.FAILED: frozenset({A.LAUNCHER, A.USER}),
    },
    S.RUNNING: {
        S.RUN_DONE: frozenset({A.LAUNCHER}),
        S.RUN_ERROR: frozenset({A.LAUNCHER}),
        S.RUN_TIMEOUT: frozenset({A.LAUNCHER, A.REAPER}),
        # claimed ahead of a free slot and given back unstarted (the launcher is stopping)
        S.RESTART_READY: frozenset({A.LAUNCHER}),
        # killed: the launcher hears it and ends the run's process group (``launcher.kills``)
        S.FAILED: frozenset({A.USER}),
    },
    S.RUN_DONE: {
        S.POSTPROCESSED: frozenset({A.POSTPROCESS}),
        S.RESTART_READY: frozenset({A.POSTPROCESS, A.USER}),
        S.FAILED: frozenset({A.POSTPROCESS, A.USER}),
    },
    S.RUN_ERROR: {
        S.RESTART_READY: frozenset({A.ERROR, A.USER}),
        S.FAILED: frozenset({A.ERROR, A.USER}),
    },
    S.RUN_TIMEOUT: {
        S.RESTART_READY: frozenset({A.TIMEOUT, A.USER}),
        S.FAILED: frozenset({A.TIMEOUT, A.USER}),
    },
    S.RESTART_READY: {
        S.RUNNING: frozenset({A.LAUNCHER}),
        S.FAILED: frozenset({A.LAUNCHER, A.USER}),
    },
    S.POSTPROCESSED: {
        S.STAGED_OUT: frozenset({A.STAGE_OUT}),
        S.FAILED: frozenset({A.STAGE_OUT, A.USER}),
    },
    S.STAGED_OUT: {
        S.JOB_FINISHED: frozenset({A.STAGE_OUT}),
        S.FAILED: frozenset({A.STAGE_OUT, A.USER}),
    },
    # reset: the job runs again from READY, or waits for (or fails with) its parents
    # (``pipeline.reentry_steps``)
    S.JOB_FINISHED: {
        S.READY: frozenset({A.USER}),
        S.AWAITING_PARENTS: frozenset({A.USER}),
    },
    S.FAILED: {
        S.RESTART_READY: frozenset({A.USER}),
        S.READY: frozenset({A.USER}),
        S.AWAITING_PARENTS: frozenset({A.USER}),
    },
}

# a job failed because the message about it was parked (see ``changes.parked_failures``)
# goes back to the state it was parked in when a user replays the message
for _state, _moves in TRANSITIONS.items():
    if _state is not S.CREATED and _moves.get(S.FAILED, frozenset()) - {A.USER, A.CLIENT}:
        TRANSITIONS[S.FAILED][_state] = TRANSITIONS[S.FAILED].get(_state, frozenset()) | {A.REPLAY}

TERMINAL_STATES: frozenset[JobState] = frozenset({S.JOB_FINISHED, S.FAILED})
RUNNABLE_STATES: frozenset[JobState] = frozenset({S.PREPROCESSED, S.RESTART_READY})


def parse_state(value: str) -> JobState:
    """The JobState named by ``value``; a clear error for an unknown name."""
    try:
        return JobState(value)
    except ValueError:
        names = ", ".join(s.value for s in JobState)
        raise ValueError(f"unknown job state {value!r}; expected one of: {names}") from None


def is_legal(from_state: JobState, to_state: JobState, by: Actor | None = None) -> bool:
    """Whether ``from_state -> to_state`` is in the table (and, if given, made by ``by``)."""
    actors = TRANSITIONS[from_state].get(to_state)
    if actors is None:
        return False
    return by is None or by in actors


def check_transition(
    job_id: int, from_state: JobState, to_state: JobState, by: Actor | None = None
) -> None:
    """Raise :class:`InvalidTransition` unless the table allows the move (a user is told
    which moves are open to them)."""
    if not is_legal(from_state, to_state, by):
        hint = ""
        if by == Actor.USER:
            targets = [s.value for s, actors in TRANSITIONS[from_state].items() if by in actors]
            hint = (
                f"a user may move a {from_state.value} job to {', '.join(targets)}"
                if targets
                else f"a user cannot move a {from_state.value} job"
            )
        raise InvalidTransition(
            job_id, from_state.value, to_state.value, by.value if by else None, hint
        )

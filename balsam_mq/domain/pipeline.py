"""Which steps of a job's life have work to do, and the default move of each step that has none.

A state's consumer has work only when the job or its app gives it some: stage-in
transfers (READY), an app's own ``preprocess`` (STAGED_IN), ``postprocess`` (RUN_DONE),
``handle_error`` (RUN_ERROR), ``handle_timeout`` (RUN_TIMEOUT), stage-out transfers
(POSTPROCESSED), ``cleanup_files`` or children waiting (JOB_FINISHED), children
waiting (FAILED); launchers always have work in PREPROCESSED and RESTART_READY.

A state without work is passed through: its consumer's default move is taken in the
same transaction as the move that reached it, and so on (:func:`passage`), every step
recorded as its own event. An event nobody has work for is *quiet*: it is published
for the log and for waiters, never to a work queue (:func:`has_work`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from balsam_mq.domain.changes import Change
from balsam_mq.domain.models import App
from balsam_mq.domain.states import Actor, JobState

S = JobState
A = Actor


@dataclass(frozen=True)
class DefaultMove:
    """What a consumer does when the app leaves the step to it."""

    to: JobState
    by: Actor
    reason: str | None = None  # recorded in state_data
    keep_data: bool = False  # carry the state_data of the move that led here

    def state_data(self, previous: Mapping[str, Any]) -> dict[str, Any]:
        """The ``state_data`` of this move, after one that recorded ``previous``."""
        state_data = dict(previous) if self.keep_data else {}
        if self.reason is not None:
            state_data = {"reason": self.reason, **state_data}
        return state_data


# from-state -> the move its consumer makes by default (hooks of ApplicationDefinition,
# no transfers to run)
DEFAULT_MOVES: dict[JobState, DefaultMove] = {
    S.READY: DefaultMove(S.STAGED_IN, A.STAGE_IN),
    S.STAGED_IN: DefaultMove(S.PREPROCESSED, A.PREPROCESS),
    S.RUN_DONE: DefaultMove(S.POSTPROCESSED, A.POSTPROCESS),
    # keep what the launcher recorded (return code, output tail) on the failure
    S.RUN_ERROR: DefaultMove(S.FAILED, A.ERROR, reason="run error", keep_data=True),
    # keep why it timed out (wall time, lost launcher) on the restart
    S.RUN_TIMEOUT: DefaultMove(S.RESTART_READY, A.TIMEOUT, keep_data=True),
    S.POSTPROCESSED: DefaultMove(S.STAGED_OUT, A.STAGE_OUT),
    S.STAGED_OUT: DefaultMove(S.JOB_FINISHED, A.STAGE_OUT),
}

# state -> the app hook its consumer runs
HOOK_OF_STATE: dict[JobState, str] = {
    S.STAGED_IN: "preprocess",
    S.RUN_DONE: "postprocess",
    S.RUN_ERROR: "handle_error",
    S.RUN_TIMEOUT: "handle_timeout",
}
HOOKS: tuple[str, ...] = tuple(HOOK_OF_STATE.values())
# hook -> the state its job is in when it runs
STATE_OF_HOOK: dict[str, JobState] = {hook: state for state, hook in HOOK_OF_STATE.items()}


@dataclass(frozen=True)
class Work:
    """What one job of one app asks of the consumers beyond their default moves."""

    hooks: frozenset[str] | None  # the app's own hooks; None: not known, so every hook
    stage_in: bool
    stage_out: bool
    cleanup: bool

    @classmethod
    def of(cls, app: App, transfers: Mapping[str, str]) -> Work:
        """From the app document and the job's ``transfers`` (slot -> URI)."""
        directions = {app.transfers[slot].direction for slot in transfers if slot in app.transfers}
        return cls(
            hooks=None if app.hooks is None else frozenset(app.hooks),
            stage_in="in" in directions,
            stage_out="out" in directions,
            cleanup=bool(app.cleanup_files),
        )

    def hook(self, name: str) -> bool:
        return self.hooks is None or name in self.hooks


def has_work(state: JobState, work: Work | None, *, has_children: bool = False) -> bool:
    """Whether some consumer acts on a job entering ``state`` (``work`` None: unknown, so
    every consumer that might is sent the event)."""
    if state in (S.PREPROCESSED, S.RESTART_READY):
        return True  # launchers claim it
    if state is S.FAILED:
        return has_children  # the dependency resolver fails the children
    if state is S.JOB_FINISHED:
        return has_children or work is None or work.cleanup
    if state is S.READY:
        return work is None or work.stage_in
    if state is S.POSTPROCESSED:
        return work is None or work.stage_out
    hook = HOOK_OF_STATE.get(state)
    if hook is not None:
        return work is None or work.hook(hook)
    return False  # CREATED, AWAITING_PARENTS, RUNNING, STAGED_OUT: nobody acts on these


def passage(state: JobState, work: Work | None) -> list[DefaultMove]:
    """The default moves a job entering ``state`` passes through at once: those of every
    step from ``state`` on that has no work, until one that has (or has no default)."""
    moves: list[DefaultMove] = []
    while work is not None and not has_work(state, work):
        move = DEFAULT_MOVES.get(state)
        if move is None:
            break
        moves.append(move)
        state = move.to
    return moves


@dataclass(frozen=True)
class Step:
    """One move of a job inside a transition: the change itself, or a default move after it."""

    from_state: JobState
    to: JobState
    by: Actor | None
    state_data: dict[str, Any]
    quiet: bool  # no consumer has work for the job in ``to``


def steps(change: Change, work: Work | None, *, has_children: bool) -> list[Step]:
    """``change``, then the default move of every following step with no work."""

    def quiet(state: JobState) -> bool:
        return not has_work(state, work, has_children=has_children)

    taken = [Step(change.expect, change.to, change.by, change.state_data, quiet(change.to))]
    for move in passage(change.to, work):
        previous = taken[-1]
        state_data = move.state_data(previous.state_data)
        taken.append(Step(previous.to, move.to, move.by, state_data, quiet(move.to)))
    return taken


def starting_state(
    parents: Sequence[tuple[int, JobState, Mapping[str, Any]]],
) -> tuple[JobState, dict[str, Any]]:
    """Where a new job starts, given its parents' ids, states and state_data in order:
    FAILED (naming the first failed parent and the ancestor whose failure it passes on)
    if a parent failed, AWAITING_PARENTS while one is unfinished, else READY."""
    for parent_id, state, state_data in parents:
        if state is S.FAILED:
            return S.FAILED, {
                "reason": f"parent job {parent_id} failed",
                "failed_parent": parent_id,
                "failed_ancestor": state_data.get("failed_ancestor", parent_id),
            }
    if any(state is not S.JOB_FINISHED for _, state, _ in parents):
        return S.AWAITING_PARENTS, {}
    return S.READY, {}

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

A user's reset sends a finished or failed job back to READY, or wherever its parents
let it, by the rule of a new job (:func:`reentry_steps`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from balsam_mq.domain.changes import Change
from balsam_mq.domain.models import App
from balsam_mq.domain.states import TERMINAL_STATES, Actor, JobState

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


def steps(
    change: Change,
    work: Work | None,
    *,
    has_children: bool,
    restarts: int = 0,
    max_retries: int | None = None,
) -> list[Step]:
    """``change``, then the default move of every following step with no work; a restart
    past ``max_retries`` (the job has had ``restarts``) fails the job instead."""

    def quiet(state: JobState) -> bool:
        return not has_work(state, work, has_children=has_children)

    taken = [Step(change.expect, change.to, change.by, change.state_data, quiet(change.to))]
    for move in passage(change.to, work):
        previous = taken[-1]
        state_data = move.state_data(previous.state_data)
        taken.append(Step(previous.to, move.to, move.by, state_data, quiet(move.to)))
    return retry_capped(taken, restarts, max_retries, quiet(S.FAILED))


# a run ended in one of these, and a hook (or the default move) restarts the job
_RETRIED_FROM = frozenset({S.RUN_DONE, S.RUN_ERROR, S.RUN_TIMEOUT})
MAX_BACKOFF_S = 3600.0


def is_retry(step: Step) -> bool:
    """A restart after a run, decided by the site (a user's restart is not counted)."""
    return step.to is S.RESTART_READY and step.from_state in _RETRIED_FROM and step.by is not A.USER


def retry_capped(
    taken: list[Step], restarts: int, max_retries: int | None, failed_quiet: bool
) -> list[Step]:
    """``taken``, or, if it restarts a job that has had ``max_retries`` restarts already,
    the same steps up to that restart, which fails the job instead, saying why: a run
    that fails every time (a missing binary) ends instead of looping."""
    if max_retries is None:
        return taken
    for i, step in enumerate(taken):
        if is_retry(step) and restarts >= max_retries:
            reason = (
                f"restarted {restarts} times already, the most allowed "
                f"(max_retries={max_retries}); it would have restarted after "
                f"{step.from_state.value}"
            )
            why = {"reason": reason, "last_restart": dict(step.state_data)}
            return [*taken[:i], Step(step.from_state, S.FAILED, step.by, why, failed_quiet)]
    return taken


def restarts_after(taken: Sequence[Step], restarts: int) -> int:
    """The job's count of restarts after ``taken``: one more for a retry, none again after
    a user's move (a user restarting or resetting a job gives it its retries back)."""
    if taken and taken[0].by is A.USER:
        restarts = 0
    return restarts + sum(is_retry(step) for step in taken)


def retry_wait_s(restarts: int, backoff_s: float) -> float:
    """How long the ``restarts``-th restart waits before it runs (0 for none)."""
    if restarts <= 0 or backoff_s <= 0:
        return 0.0
    return float(min(backoff_s * 2 ** (restarts - 1), MAX_BACKOFF_S))


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


# --- reset: a finished or failed job re-enters the pipeline --------------------------------

# what a job keeps of its last run is dropped when it re-enters: a new run writes its own
REENTRY_CLEARS: dict[str, Any] = {
    "return_code": None,
    "result": None,
    "exception": None,
    "traceback": None,
    "unfit": None,
}


def reentering(change: Change) -> bool:
    """Whether ``change`` is a user's reset: a JOB_FINISHED or FAILED job sent back to READY
    (or AWAITING_PARENTS), which passes its parents' check again (:func:`reentry_steps`)."""
    return (
        change.by is A.USER
        and change.expect in TERMINAL_STATES
        and change.to in (S.READY, S.AWAITING_PARENTS)
    )


def reentry_steps(
    change: Change,
    parents: Sequence[tuple[int, JobState, Mapping[str, Any]]],
    work: Work | None,
    *,
    has_children: bool,
) -> list[Step]:
    """The steps of a reset (:func:`reentering`), given the job's parents as they are now
    (ids, states and state_data, in order), by the rule a new job follows
    (:func:`starting_state`): READY and on through the steps with no work when every parent
    is JOB_FINISHED; AWAITING_PARENTS while one is unfinished (the dependency resolver
    releases it); and when one is FAILED, AWAITING_PARENTS then FAILED at once, as the
    resolver fails the children of a failed parent, naming it."""
    state, failure = starting_state(parents)
    if state is S.READY:
        return steps(replace(change, to=S.READY), work, has_children=has_children)
    waiting = Step(change.expect, S.AWAITING_PARENTS, change.by, dict(change.state_data), True)
    if state is S.AWAITING_PARENTS:
        return [waiting]
    quiet = not has_work(S.FAILED, work, has_children=has_children)
    return [waiting, Step(S.AWAITING_PARENTS, S.FAILED, A.RESOLVER, failure, quiet)]

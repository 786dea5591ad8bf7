"""Steering jobs that exist: kill them (a running job's launcher ends its process group), reset
them (they run again from READY), and delete them (running ones killed first), through the
Backend's transitions, so the same rules hold on every backend.

Every move is the user's, checked by the state table: a kill is ``→ FAILED`` from wherever
the job is (RUNNING included: its launcher hears the event and kills the run), a reset is
``FAILED | JOB_FINISHED → READY``, which the store sends on as the job's parents allow
(``pipeline.reentry_steps``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from balsam_mq.domain import Actor, Change, JobState, is_legal
from balsam_mq.domain.queries import Condition, QuerySpec
from balsam_mq.domain.states import TERMINAL_STATES
from balsam_mq.sdk.client import Client

S = JobState

KILLED = "killed by the user"
DELETED = "killed by the user: the job was deleted"
RESET = "reset by the user"
# a kill follows a job that moves on meanwhile (claimed, its hook done...) this many times
_KILL_ATTEMPTS = 5


@dataclass(frozen=True)
class Steered:
    """What a kill or a reset did: ``moved`` maps each job it moved to the state it was in
    and the state it ended in; ``left`` maps each job it left alone to its state (finished
    jobs for a kill; jobs not FAILED or JOB_FINISHED for a reset).

    Example::

        done = await Job.objects.filter(tags={"run": "H2O"}).kill()
        print(sorted(done.moved), "killed;", sorted(done.left), "had finished")
    """

    moved: dict[int, tuple[JobState, JobState]]
    left: dict[int, JobState]

    def was(self, state: JobState | str) -> list[int]:
        """The ids of the moved jobs that were in ``state`` (``"RUNNING"``: those killed
        while they ran)."""
        wanted = JobState(state)
        return sorted(i for i, (before, _) in self.moved.items() if before is wanted)


def _ids(job_ids: Iterable[int]) -> QuerySpec:
    return QuerySpec("jobs", (Condition("id", "in", sorted(job_ids)),))


async def _states(client: Client, spec: QuerySpec) -> dict[int, JobState]:
    rows = await client.backend.values(spec, ("id", "state"))
    return {row["id"]: JobState(row["state"]) for row in rows}


async def kill(client: Client, spec: QuerySpec, reason: str = KILLED) -> Steered:
    """Fail every job ``spec`` matches that has not finished, with ``reason`` as its
    ``state_data["reason"]``; finished jobs are left alone."""
    return await _kill(client, await _states(client, spec), reason)


async def _kill(client: Client, states: Mapping[int, JobState], reason: str) -> Steered:
    moved: dict[int, tuple[JobState, JobState]] = {}
    left: dict[int, JobState] = {}
    pending = dict(states)
    for _ in range(_KILL_ATTEMPTS):
        changes = []
        for job_id, state in sorted(pending.items()):
            if is_legal(state, S.FAILED, Actor.USER):
                changes.append(Change(job_id, state, S.FAILED, {"reason": reason}, by=Actor.USER))
            else:  # finished (or a job being created, which never rests there)
                left[job_id] = state
        if not changes:
            return Steered(moved, left)
        result = await client.backend.transition_jobs(changes)
        for job_id in result.moved:
            moved[job_id] = (pending[job_id], result.final.get(job_id, S.FAILED))
        # moved on since it was read: killed from where it is now (a deleted one is gone)
        pending = {i: state for i, state in result.unmoved.items() if state is not None}
    left.update(pending)
    return Steered(moved, left)


async def reset(client: Client, spec: QuerySpec, *, descendants: bool = False) -> Steered:
    """Send every FAILED or JOB_FINISHED job ``spec`` matches (and, with ``descendants``,
    every such job that depends on one of them, transitively) back to READY, as the user.
    Where a job goes depends on its parents (``pipeline.reentry_steps``): READY and on,
    AWAITING_PARENTS, or FAILED again, naming a failed parent. Jobs in other states are
    left alone."""
    states = await _states(client, spec)
    if descendants:
        frontier = sorted(states)
        while frontier:
            children = await _states(
                client, QuerySpec("jobs", (Condition("parent_ids", "in", frontier),))
            )
            new = {i: s for i, s in children.items() if i not in states}
            states.update(new)
            frontier = sorted(new)
    # parents (lower ids) first: a backend that splits a long batch resets them before
    # their children, which then wait for them instead of failing with them
    changes = [
        Change(job_id, state, S.READY, {"reason": RESET}, by=Actor.USER)
        for job_id, state in sorted(states.items())
        if state in TERMINAL_STATES
    ]
    left = {i: s for i, s in states.items() if s not in TERMINAL_STATES}
    result = await client.backend.transition_jobs(changes)
    moved = {i: (states[i], result.final.get(i, S.READY)) for i in result.moved}
    left.update({i: s for i, s in result.unmoved.items() if s is not None})
    return Steered(moved, left)


async def delete(client: Client, spec: QuerySpec) -> int:
    """Delete the jobs ``spec`` matches; how many were deleted. Running ones are killed
    first (their launchers end their processes), with :data:`DELETED` as the reason.

    A RUNNING job is never deleted as it is: each deletion leaves RUNNING jobs out, in the
    same command that deletes the others, so a job a launcher claims meanwhile is found
    running afterwards, killed, then deleted — never left running with nowhere to report.
    """
    if spec.windowed:  # a window moves once jobs are deleted: fix the matches by id
        spec = _ids(await _states(client, spec))
    deleted = 0
    for _ in range(_KILL_ATTEMPTS):
        idle = replace(spec, conditions=(*spec.conditions, Condition("state", "ne", S.RUNNING)))
        deleted += await client.backend.delete(idle)
        running = await _states(client, spec)  # left: running, or claimed since
        if not running:
            break
        await _kill(client, running, DELETED)
        spec = _ids(running)  # a killed job may no longer match the filter: by its id
    return deleted

"""Input and output types of the store's transition function."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from balsam_mq.domain.models import Event
from balsam_mq.domain.states import TRANSITIONS, Actor, JobState


@dataclass(frozen=True)
class Change:
    """Move job ``job_id`` from ``expect`` to ``to``, only if it is still in ``expect``
    (and, with ``held_by``, still held by that launcher session: the outcome of a run
    whose job was taken from its launcher and claimed again never lands on the new run).

    ``fields`` are further job fields written in the same conditional update
    (``data``, ``return_code``, ``session_id``, ...).

    ``known``: the job's fields that a transition decides on, as the caller last saw
    them (a read's, or a previous transition's ``TransitionResult.after``). When every
    change of a small batch has them (``store.known.KNOWN_MAX``), the transition writes
    on that knowledge instead of reading the jobs first, and reads them after all if one
    has changed since.
    """

    job_id: int
    expect: JobState
    to: JobState
    state_data: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    by: Actor | None = None
    held_by: int | None = None  # the launcher session the job must still be held by
    known: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TransitionResult:
    """Which jobs moved, and for those that did not, the state they were found in."""

    moved: list[int]
    unmoved: dict[int, JobState | None]  # None: no such job
    # the state each moved job ended in: its change's target, or further on when steps
    # with no work were passed through
    final: dict[int, JobState] = field(default_factory=dict)
    # each moved job's fields that a transition decides on, as this one left them: the
    # ``known`` of its next change
    after: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def all_moved(self) -> bool:
        return not self.unmoved


def parked_failures(
    events: Iterable[Event], accepts: tuple[JobState, ...], parked: Parked
) -> list[Change]:
    """The moves to FAILED of the jobs a parked message announced in one of ``accepts``
    (each still in that state: a job that moved on is left alone), made by the actor
    that acts on that state, with the reason naming the queue and the error."""
    changes: list[Change] = []
    for event in events:
        if event.job_id is None or event.to_state not in accepts:
            continue
        state = JobState(event.to_state)
        actor = failing_actor(state)
        if actor is not None:
            changes.append(parked.failure(event.job_id, state, actor))
    return changes


@dataclass(frozen=True)
class Parked:
    """A message parked in the dead-letter queue: ``queue`` could not handle it."""

    message_id: str
    queue: str
    error: str

    def failure(self, job_id: int, state: JobState, by: Actor) -> Change:
        """Job ``job_id`` fails where it waits (``state``), marked so that replaying the
        message (``balsam-mq dead retry``) returns it there."""
        reason = f"{self.queue} could not handle this job and parked its message: {self.error}"
        return Change(
            job_id,
            state,
            JobState.FAILED,
            state_data={
                "reason": reason[:2000],
                PARKED_KEY: {"message": self.message_id, "queue": self.queue, "from": state.value},
            },
            by=by,
        )


# the state_data key marking a job failed by a parked message
PARKED_KEY = "parked"


def failing_actor(state: JobState) -> Actor | None:
    """The actor (other than a user or the client) that may fail a job in ``state``."""
    actors = TRANSITIONS[state].get(JobState.FAILED, frozenset()) - {Actor.USER, Actor.CLIENT}
    return min(actors) if actors else None

"""Input and output types of the store's transition function."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from balsam_mq.domain.states import Actor, JobState


@dataclass(frozen=True)
class Change:
    """Move job ``job_id`` from ``expect`` to ``to``, only if it is still in ``expect``.

    ``fields`` are further job fields written in the same conditional update
    (``data``, ``return_code``, ``session_id``, ...).
    """

    job_id: int
    expect: JobState
    to: JobState
    state_data: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    by: Actor | None = None


@dataclass(frozen=True)
class TransitionResult:
    """Which jobs moved, and for those that did not, the state they were found in."""

    moved: list[int]
    unmoved: dict[int, JobState | None]  # None: no such job
    # the state each moved job ended in: its change's target, or further on when steps
    # with no work were passed through
    final: dict[int, JobState] = field(default_factory=dict)

    @property
    def all_moved(self) -> bool:
        return not self.unmoved

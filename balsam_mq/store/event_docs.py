"""The stored form of a job's events: one document per transaction's steps of a job (the
first step's event, the others in its ``then`` list: ``domain.models.THEN``), with ids
made here in order."""

from __future__ import annotations

import os
import time
from typing import Any

from bson import ObjectId

from balsam_mq.domain import Event
from balsam_mq.domain.models import THEN, blank, plain
from balsam_mq.domain.pipeline import Step

Doc = dict[str, Any]

_EVENT = blank(Event, site_id=0, to_state="")  # every field of a job event, in order


class EventIds:
    """The ObjectIds of job event documents and their steps, a run of consecutive ones at
    a time (a document's, then its steps', in order), several times cheaper than
    ``ObjectId()`` each: the time, five random bytes of this process's own (drawn again
    in a forked child), and a counter. A process's job events sort by id in the order it
    wrote them."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._random = os.urandom(5)
        self._next = int.from_bytes(os.urandom(3), "big")

    def take(self, n: int) -> list[ObjectId]:
        head = int(time.time()).to_bytes(4, "big") + self._random
        first, self._next = self._next, (self._next + n) % _COUNTER_SPAN
        return [ObjectId(head + ((first + i) % _COUNTER_SPAN).to_bytes(3, "big")) for i in range(n)]


_COUNTER_SPAN = 1 << 24  # an ObjectId's counter has three bytes
event_ids = EventIds()


def event_doc(
    site_id: int, job_id: int, app_id: int | None, seq: int, steps: list[Step], now: Any
) -> Doc:
    """The event document of a job's ``steps`` in one transaction, numbered on from the
    job's ``seq``: the first step's event, the others in its ``then`` list (see
    ``domain.models.THEN``)."""
    first, *later = steps
    doc = dict(_EVENT)
    doc["site_id"] = site_id
    doc["job_id"] = job_id
    doc["app_id"] = app_id
    doc["timestamp"] = now
    doc.update(step_fields(first, seq + 1))
    doc["_id"], *ids = event_ids.take(len(steps))  # its events sort in order by id
    if later:
        numbered = enumerate(zip(later, ids, strict=True), start=seq + 2)
        doc[THEN] = [{**step_fields(step, n), "_id": id_} for n, (step, id_) in numbered]
    return doc


def step_fields(step: Step, seq: int) -> Doc:
    """The fields of ``step``'s event that a ``then`` entry holds (but ``_id``)."""
    return {
        "from_state": step.from_state.value,
        "to_state": step.to.value,
        "seq": seq,
        "by": None if step.by is None else step.by.value,
        "state_data": plain(step.state_data),
        "quiet": step.quiet,
    }


def renewed(doc: Doc, job_id: int) -> Doc:
    """The event document ``doc`` for job ``job_id``, with ids of its own."""
    event = doc.copy()
    event["job_id"] = job_id
    then = doc.get(THEN) or []
    event["_id"], *ids = event_ids.take(1 + len(then))
    if then:
        event[THEN] = [{**step, "_id": id_} for step, id_ in zip(then, ids, strict=True)]
    return event

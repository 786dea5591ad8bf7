"""What a transition decides on of each job, and transitions written on what their callers
know of it instead of reading it (``Change.known``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from balsam_mq.domain import Change

Doc = dict[str, Any]

# the most changes a transition makes on what its callers know instead of reading the
# jobs: an update filtered on every known field costs MongoDB more than one by id, so
# from about 8 jobs on, one read of all of them and updates by id cost less
KNOWN_MAX = 4

# what a transition reads of each job inside its transaction
TRANSITION_FIELDS = {"state": 1, "site_id": 1, "app_id": 1, "seq": 1, "transfers": 1}
TRANSITION_FIELDS["session_id"] = 1  # a run's outcome lands only on its own claim
TRANSITION_FIELDS["last_child_at"] = 1  # a job with children routes its end to the resolver
TRANSITION_FIELDS["parent_ids"] = 1  # a reset job passes its parents' check again
TRANSITION_FIELDS["restarts"] = 1  # a restart past the job's max_retries fails the job
TRANSITION_FIELDS["max_retries"] = 1  # the job's own limit, if it has one


def transition_fields(doc: Mapping[str, Any]) -> Doc:
    """What a transition decides on of a job's document ``doc`` (those it has)."""
    return {f: doc[f] for f in TRANSITION_FIELDS if f in doc}


def known_of(changes: Sequence[Change]) -> dict[int, Doc] | None:
    """The jobs of ``changes`` as their callers know them, if they are at most
    :data:`KNOWN_MAX`, every change says and each job was, as known, where its change
    expects it (else a transition reads them)."""
    if len(changes) > KNOWN_MAX:
        return None
    known: dict[int, Doc] = {}
    for c in changes:
        if c.known is None or c.known.get("state") != c.expect:
            return None
        if c.held_by is not None and c.known.get("session_id") != c.held_by:
            return None
        known[c.job_id] = {**c.known, "_id": c.job_id}
    return known


def update_filter(job_id: int, known: Mapping[int, Doc] | None) -> Doc:
    """The filter of a transition's update of job ``job_id``: by id alone after a read in
    the transaction; else the job as known, every field a transition decides on."""
    if known is None:
        return {"_id": job_id}
    return {"_id": job_id, **{f: known[job_id].get(f) for f in TRANSITION_FIELDS}}


class Changed(Exception):
    """A job of a transition was no longer as its change knew it."""

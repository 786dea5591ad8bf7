"""Event messages: stored documents, encoded without their models, decode to the events
the models would give."""

from __future__ import annotations

from datetime import UTC, datetime

from bson import ObjectId

from balsam_mq.domain import Event, decode_events, encode_event_docs, encode_events
from balsam_mq.domain.models import expand_event_doc


def _doc(**state_data: object) -> dict[str, object]:
    return {
        "_id": ObjectId(),
        "kind": "job",
        "site_id": 3,
        "job_id": 42,
        "app_id": 7,
        "batch_job_id": None,
        "from_state": "RUNNING",
        "to_state": "RUN_DONE",
        "seq": 4,
        "by": "launcher",
        "timestamp": datetime(2026, 11, 30, 18, 35, 20, 946000, tzinfo=UTC),
        "state_data": dict(state_data),
        "quiet": False,
    }


def test_stored_documents_travel_as_their_events() -> None:
    docs = [_doc(return_code=0, tail=["a", "b"], nested={"x": 1.5}), _doc()]
    events = decode_events(encode_event_docs(docs))
    assert events == [Event.from_doc(d) for d in docs]
    assert events == decode_events(encode_events(events))
    assert events[0].id == str(docs[0]["_id"]) and "_id" in docs[0]  # the stored one unchanged


def test_values_the_fast_encoder_refuses_still_travel() -> None:
    (event,) = decode_events(encode_event_docs([_doc(big=2**70, small=-(2**65))]))
    assert event.state_data == {"big": 2**70, "small": -(2**65)}


def test_a_passage_document_travels_as_one_event_per_step() -> None:
    doc = _doc()
    later = {"_id": ObjectId(), "from_state": "RUN_DONE", "to_state": "POSTPROCESSED"}
    doc["then"] = [{**later, "seq": 5, "by": "postprocess", "state_data": {}, "quiet": True}]
    events = decode_events(encode_event_docs(expand_event_doc(doc)))
    assert [(e.to_state, e.seq, e.quiet, e.job_id) for e in events] == [
        ("RUN_DONE", 4, False, 42),
        ("POSTPROCESSED", 5, True, 42),
    ]
    assert len({e.id for e in events}) == 2

"""What travels over RabbitMQ: event batches (a JSON array per message) and the consumer's view.

A message carries one or more events of one routing key, as a JSON array of event
objects, each with its ``id``. Consumers read every event of a message; a consumer that
defers some of them, or whose message must be retried item by item, hands the broker
those items again (the broker treats them as opaque JSON objects with an ``id``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from balsam_mq.domain.models import Event, routing_site
from balsam_mq.errors import SerializationError

_EVENTS: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


def encode_events(events: Sequence[Event]) -> bytes:
    """The JSON body of a message carrying ``events``."""
    return _EVENTS.dump_json(list(events))


def encode_event_docs(docs: Sequence[dict[str, Any]]) -> bytes:
    """The JSON body of a message carrying stored event documents (as the store reads
    them): the same as :func:`encode_events` of their models, without building them.
    Encoded by orjson, several times faster than ``json``; by ``json`` what orjson
    refuses (an integer beyond 64 bits in ``state_data``, say)."""
    wired = [_wire(d) for d in docs]
    try:
        return orjson.dumps(wired, default=_json_value)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(wired, default=_json_value).encode()


def _wire(doc: dict[str, Any]) -> dict[str, Any]:
    if "_id" not in doc:
        return doc
    out = doc.copy()
    out["id"] = str(out.pop("_id"))
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # ObjectId and the like


def decode_events(body: bytes) -> list[Event]:
    """The events of a message body (a JSON array; a single JSON object is one event)."""
    try:
        if body[:1] == b"{":
            return [Event.model_validate_json(body)]
        return _EVENTS.validate_json(body)
    except ValidationError as exc:
        raise SerializationError(f"malformed event message: {exc}") from exc


@dataclass(frozen=True)
class Delivery:
    """One received message as a handler sees it (no broker types leak out)."""

    message_id: str
    routing_key: str
    body: bytes
    attempts: int  # failed handlings so far
    redelivered: bool
    deferrals: int = 0  # times a handler asked to see it again later

    def events(self) -> list[Event]:
        return decode_events(self.body)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise SerializationError(f"message {self.message_id}: body is not JSON") from exc


@dataclass(frozen=True)
class ParkedMessage:
    """A message in the dead-letter queue: what it announced and why it was parked."""

    message_id: str
    queue: str  # the work queue that could not handle it
    routing_key: str
    attempts: int
    error: str  # the last failure, with its traceback
    parked_at: str  # ISO time, "" if unknown
    body: bytes

    def events(self) -> list[Event]:
        """The events the message carried (none if it was not an event message)."""
        try:
            return decode_events(self.body)
        except SerializationError:
            return []

    @property
    def job_ids(self) -> list[int]:
        return sorted({e.job_id for e in self.events() if e.job_id is not None})

    @property
    def site_id(self) -> int | None:
        return routing_site(self.routing_key)

    @property
    def summary(self) -> str:
        """The last line of the error (the exception and its message)."""
        lines = [line for line in self.error.strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""

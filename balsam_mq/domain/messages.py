"""What travels over RabbitMQ: event bodies (JSON) and the consumer's view of a delivery."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from balsam_mq.domain.models import Event
from balsam_mq.errors import SerializationError


def encode_event(event: Event) -> bytes:
    """The JSON body of an event message."""
    return event.model_dump_json().encode()


def decode_event(body: bytes) -> Event:
    try:
        return Event.model_validate_json(body)
    except ValueError as exc:
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

    def event(self) -> Event:
        return decode_event(self.body)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise SerializationError(f"message {self.message_id}: body is not JSON") from exc

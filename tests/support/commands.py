"""A MongoDB command listener: what a client sent, one ``"<command> <target>"`` line each."""

from __future__ import annotations

from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)


class Commands(CommandListener):
    def __init__(self) -> None:
        self.sent: list[str] = []

    def started(self, event: CommandStartedEvent) -> None:
        self.sent.append(f"{event.command_name} {event.command.get(event.command_name)}")

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass

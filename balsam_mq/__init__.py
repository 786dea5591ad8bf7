"""balsam_mq: Balsam's user model on RabbitMQ and MongoDB.

Public names: ``ApplicationDefinition``, ``Job``, ``Site``, ``App`` (stored apps),
``BatchJob``, ``EventLog``, ``TransferItem``, ``DeadLetters`` (parked messages), ``connect`` and the
``errors`` module. They are imported on
first use, so importing ``balsam_mq.settings`` (the CLI) does not load the SDK. Code
without an event loop uses ``balsam_mq.blocking``, which has the same names without
``await``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from balsam_mq import errors

if TYPE_CHECKING:
    from balsam_mq.sdk import (
        App,
        ApplicationDefinition,
        BatchJob,
        DeadLetters,
        EventLog,
        Job,
        Site,
        TransferItem,
        connect,
    )

__all__ = [
    "App",
    "ApplicationDefinition",
    "BatchJob",
    "DeadLetters",
    "EventLog",
    "Job",
    "Site",
    "TransferItem",
    "connect",
    "errors",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(import_module("balsam_mq.sdk"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'balsam_mq' has no attribute {name!r}")

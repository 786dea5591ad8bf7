"""The SDK without ``await``: ``from balsam_mq.blocking import ApplicationDefinition, Job``.

See :mod:`balsam_mq.sdk.blocking` for how it works.
"""

from balsam_mq import errors
from balsam_mq.sdk.blocking import (
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

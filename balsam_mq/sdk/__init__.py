"""The async SDK: ApplicationDefinition, Job and the other managed resources, connect().

``balsam_mq.sdk.blocking`` offers the same names without ``await`` for code that has
no event loop. Names are imported on first use: defining an app
(``ApplicationDefinition``) loads no database or broker library, which only the client
loads when it connects.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# imported at once: the function shares its name with its module (a light one)
from balsam_mq.sdk.capture import capture as capture

if TYPE_CHECKING:  # for type checkers; at run time, __getattr__ below imports them
    from balsam_mq.sdk.app import ApplicationDefinition as ApplicationDefinition
    from balsam_mq.sdk.client import (
        Client as Client,
        close_default_client as close_default_client,
        connect as connect,
        get_client as get_client,
        use_client as use_client,
    )
    from balsam_mq.sdk.dead import DeadLetters as DeadLetters
    from balsam_mq.sdk.feed import EventFeed as EventFeed
    from balsam_mq.sdk.futures import (
        ALL_COMPLETED as ALL_COMPLETED,
        FIRST_COMPLETED as FIRST_COMPLETED,
        FIRST_EXCEPTION as FIRST_EXCEPTION,
    )
    from balsam_mq.sdk.job import Job as Job
    from balsam_mq.sdk.memory import MemoryBackend as MemoryBackend
    from balsam_mq.sdk.modules import (
        load_definitions as load_definitions,
        sync_definitions as sync_definitions,
    )
    from balsam_mq.sdk.query import Query as Query
    from balsam_mq.sdk.resources import (
        App as App,
        BatchJob as BatchJob,
        EventLog as EventLog,
        Site as Site,
        TransferItem as TransferItem,
    )

# public name -> the module of this package that defines it
_WHERE = {
    "ALL_COMPLETED": "futures",
    "FIRST_COMPLETED": "futures",
    "FIRST_EXCEPTION": "futures",
    "App": "resources",
    "ApplicationDefinition": "app",
    "BatchJob": "resources",
    "Client": "client",
    "DeadLetters": "dead",
    "EventFeed": "feed",
    "EventLog": "resources",
    "Job": "job",
    "MemoryBackend": "memory",
    "Query": "query",
    "Site": "resources",
    "TransferItem": "resources",
    "close_default_client": "client",
    "connect": "client",
    "get_client": "client",
    "load_definitions": "modules",
    "sync_definitions": "modules",
    "use_client": "client",
}

__all__ = sorted([*_WHERE, "capture"])


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'balsam_mq.sdk' has no attribute {name!r}")
    value = getattr(import_module(f"balsam_mq.sdk.{module}"), name)
    globals()[name] = value
    return value

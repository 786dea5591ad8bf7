"""The async SDK: ApplicationDefinition, Job and the other managed resources, connect().

``balsam_mq.sdk.blocking`` offers the same names without ``await`` for code that has
no event loop; ``balsam_mq.sdk.hooks`` runs hooks for the site agent.
"""

from balsam_mq.sdk.app import ApplicationDefinition
from balsam_mq.sdk.capture import capture
from balsam_mq.sdk.client import Client, close_default_client, connect, get_client
from balsam_mq.sdk.feed import EventFeed
from balsam_mq.sdk.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
from balsam_mq.sdk.job import Job
from balsam_mq.sdk.modules import load_definitions, sync_definitions
from balsam_mq.sdk.query import Query
from balsam_mq.sdk.resources import App, BatchJob, EventLog, Site

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "App",
    "ApplicationDefinition",
    "BatchJob",
    "Client",
    "EventFeed",
    "EventLog",
    "Job",
    "Query",
    "Site",
    "capture",
    "close_default_client",
    "connect",
    "get_client",
    "load_definitions",
    "sync_definitions",
]

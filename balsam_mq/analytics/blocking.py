"""The analytics reports without ``await``, on the blocking SDK's event loop.

Example::

    from balsam_mq.blocking import EventLog
    from balsam_mq.analytics.blocking import throughput_report

    times, done = throughput_report(EventLog.objects.filter(site="polaris"))
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from balsam_mq.analytics import reports
from balsam_mq.domain.states import JobState
from balsam_mq.sdk.blocking_queries import BlockingManager, BlockingQuery
from balsam_mq.sdk.portal import call

# a blocking query or manager, or an async one
Selection = BlockingQuery[Any] | BlockingManager[Any] | reports.Selection

__all__ = ["available_nodes", "throughput_report", "utilization_report"]


def throughput_report(
    events: Selection, to_state: str | JobState = "JOB_FINISHED"
) -> tuple[list[datetime], list[int]]:
    """:func:`balsam_mq.analytics.throughput_report`, plain."""
    return call(reports.throughput_report, _unwrapped(events), to_state)


def utilization_report(
    events: Selection, node_weighting: bool = True
) -> tuple[list[datetime], list[float]]:
    """:func:`balsam_mq.analytics.utilization_report`, plain."""
    return call(reports.utilization_report, _unwrapped(events), node_weighting)


def available_nodes(batch_jobs: Selection) -> tuple[list[datetime], list[int]]:
    """:func:`balsam_mq.analytics.available_nodes`, plain."""
    return call(reports.available_nodes, _unwrapped(batch_jobs))


def _unwrapped(selection: Selection) -> reports.Selection:
    """The async query or manager a blocking one wraps."""
    if isinstance(selection, BlockingQuery):
        return selection.query
    if isinstance(selection, BlockingManager):
        return selection.manager
    return selection

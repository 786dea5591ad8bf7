"""Balsam's ``balsam.analytics``, async: throughput and utilization over time from the event
log, and the nodes batch jobs held, as ``(times, values)`` lists ready for matplotlib.

Example::

    from balsam_mq import BatchJob, EventLog
    from balsam_mq.analytics import available_nodes, throughput_report, utilization_report

    events = EventLog.objects.filter(site="polaris", tags={"run": "H2O"})
    times, done = await throughput_report(events)  # jobs that reached JOB_FINISHED
    times, busy = await utilization_report(events)  # nodes busy with RUNNING jobs
    times, nodes = await available_nodes(BatchJob.objects.filter(site="polaris"))
    plt.step(times, busy, where="post")

``balsam_mq.analytics.blocking`` has the same functions without ``await``. The names are
imported on first use: ``analytics.series`` (pure) loads no SDK.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from balsam_mq.analytics.reports import (
        available_nodes as available_nodes,
        throughput_report as throughput_report,
        utilization_report as utilization_report,
    )

__all__ = ["available_nodes", "throughput_report", "utilization_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(import_module("balsam_mq.analytics.reports"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'balsam_mq.analytics' has no attribute {name!r}")

"""Batch schedulers behind one interface: local (a subprocess), Slurm, PBS."""

from __future__ import annotations

from balsam_mq.errors import ConfigError
from balsam_mq.site.schedulers.base import Scheduler, SchedulerJob, Submission, run_command
from balsam_mq.site.schedulers.local import LocalScheduler
from balsam_mq.site.schedulers.pbs import PBSScheduler
from balsam_mq.site.schedulers.slurm import SlurmScheduler

SCHEDULERS: dict[str, type[Scheduler]] = {
    "local": LocalScheduler,
    "slurm": SlurmScheduler,
    "pbs": PBSScheduler,
}


def make_scheduler(kind: str) -> Scheduler:
    """The scheduler named ``kind`` (local, slurm or pbs)."""
    try:
        return SCHEDULERS[kind]()
    except KeyError:
        names = ", ".join(SCHEDULERS)
        raise ConfigError(f"scheduler.kind: unknown scheduler {kind!r}; expected {names}") from None


__all__ = [
    "SCHEDULERS",
    "LocalScheduler",
    "PBSScheduler",
    "Scheduler",
    "SchedulerJob",
    "SlurmScheduler",
    "Submission",
    "make_scheduler",
    "run_command",
]

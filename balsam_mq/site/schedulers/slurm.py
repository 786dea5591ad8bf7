"""Slurm: sbatch to submit, squeue for states, scancel to delete."""

from __future__ import annotations

import getpass
from collections.abc import Sequence

from balsam_mq.domain import BatchJobState
from balsam_mq.errors import SchedulerError
from balsam_mq.site.schedulers.base import Scheduler, SchedulerJob, Submission, run_command

B = BatchJobState
QUEUED_STATES = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
     "SUSPENDED", "STOPPED"}
)  # fmt: skip
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"})


def slurm_state(raw: str) -> BatchJobState:
    raw = raw.upper()
    if raw in QUEUED_STATES:
        return B.QUEUED
    if raw in RUNNING_STATES:
        return B.RUNNING
    return B.FINISHED


class SlurmScheduler(Scheduler):
    name = "slurm"

    def __init__(self, *, user: str | None = None) -> None:
        self.user = user or getpass.getuser()

    def submit_argv(self, s: Submission) -> list[str]:
        argv = ["sbatch", "--parsable", "-N", str(s.num_nodes), "-t", str(s.wall_time_min)]
        if s.project:
            argv += ["-A", s.project]
        if s.queue:
            argv += ["-q", s.queue]
        argv += ["-o", str(s.output), *s.extra_args, str(s.script)]
        return argv

    async def submit(self, submission: Submission) -> str:
        _, out, _ = await run_command(self.submit_argv(submission), cwd=submission.script.parent)
        first = out.strip().splitlines()[-1] if out.strip() else ""
        scheduler_id = first.split(";")[0].strip()
        if not scheduler_id.isdigit():
            raise SchedulerError(f"sbatch answered {out.strip()!r}, not a job id")
        return scheduler_id

    async def status(self, scheduler_ids: Sequence[str]) -> dict[str, SchedulerJob]:
        if not scheduler_ids:
            return {}
        argv = ["squeue", "--noheader", "-u", self.user, "-o", "%i|%T|%D|%l"]
        _, out, _ = await run_command(argv)
        known: dict[str, SchedulerJob] = {}
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) < 2:
                continue
            sid, raw = parts[0].strip(), parts[1].strip()
            info = {"nodes": parts[2].strip()} if len(parts) > 2 else {}
            if len(parts) > 3:
                info["time_limit"] = parts[3].strip()
            known[sid] = SchedulerJob(sid, slurm_state(raw), raw, info)
        return {sid: known.get(sid, SchedulerJob(sid, B.FINISHED, "gone")) for sid in scheduler_ids}

    async def delete(self, scheduler_id: str) -> None:
        await run_command(["scancel", scheduler_id])

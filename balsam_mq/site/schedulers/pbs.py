"""PBS (Pro): qsub to submit, qstat -f -F json for states, qdel to delete."""

from __future__ import annotations

import json
from collections.abc import Sequence

from balsam_mq.domain import BatchJobState
from balsam_mq.errors import SchedulerError
from balsam_mq.site.schedulers.base import Scheduler, SchedulerJob, Submission, run_command

B = BatchJobState
_STATES = {
    "Q": B.QUEUED,
    "H": B.QUEUED,
    "W": B.QUEUED,
    "T": B.QUEUED,
    "S": B.QUEUED,
    "U": B.QUEUED,
    "R": B.RUNNING,
    "E": B.RUNNING,
    "B": B.RUNNING,
    "F": B.FINISHED,
    "X": B.FINISHED,
}


def walltime(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


class PBSScheduler(Scheduler):
    name = "pbs"

    def submit_argv(self, s: Submission) -> list[str]:
        argv = [
            "qsub",
            "-l",
            f"select={s.num_nodes}",
            "-l",
            f"walltime={walltime(s.wall_time_min)}",
        ]
        if s.project:
            argv += ["-A", s.project]
        if s.queue:
            argv += ["-q", s.queue]
        argv += [*s.extra_args, str(s.script)]
        return argv

    async def submit(self, submission: Submission) -> str:
        _, out, _ = await run_command(self.submit_argv(submission), cwd=submission.script.parent)
        scheduler_id = out.strip().splitlines()[-1].strip() if out.strip() else ""
        if not scheduler_id or not scheduler_id.split(".")[0].isdigit():
            raise SchedulerError(f"qsub answered {out.strip()!r}, not a job id")
        return scheduler_id

    async def status(self, scheduler_ids: Sequence[str]) -> dict[str, SchedulerJob]:
        if not scheduler_ids:
            return {}
        # -x includes finished jobs; an id PBS has forgotten makes qstat fail for that
        # id only, so its answer is read whatever the exit code
        argv = ["qstat", "-f", "-F", "json", "-x", *scheduler_ids]
        code, out, err = await run_command(argv, ok_codes=range(256))
        try:
            jobs = json.loads(out).get("Jobs", {}) if out.strip() else {}
        except ValueError:
            raise SchedulerError(
                f"qstat answered unreadable JSON (exit {code}): {err.strip()}"
            ) from None
        by_number = {}
        for full_id, job in jobs.items():
            raw = str(job.get("job_state", "?"))
            info = {"queue": job.get("queue"), "nodes": job.get("Resource_List", {}).get("nodect")}
            by_number[full_id.split(".")[0]] = SchedulerJob(
                full_id, _STATES.get(raw, B.QUEUED), raw, info
            )
        out_states = {}
        for sid in scheduler_ids:
            found = by_number.get(sid.split(".")[0])
            out_states[sid] = found if found is not None else SchedulerJob(sid, B.FINISHED, "gone")
        return out_states

    async def delete(self, scheduler_id: str) -> None:
        code, out, err = await run_command(["qdel", scheduler_id], ok_codes=range(256))
        text = (err + out).lower()
        if code != 0 and "unknown job" not in text and "finished" not in text:
            raise SchedulerError(f"qdel {scheduler_id} failed with exit code {code}: {err.strip()}")

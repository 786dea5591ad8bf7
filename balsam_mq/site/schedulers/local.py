"""The local scheduler: a batch job is its script run at once as a subprocess of this host."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from balsam_mq.domain import BatchJobState
from balsam_mq.errors import SchedulerError
from balsam_mq.site.schedulers.base import Scheduler, SchedulerJob, Submission


class LocalScheduler(Scheduler):
    """Starts each script with bash in its own process group; the id is the pid.

    Nothing queues: a submitted job is RUNNING until its process exits. Deleting
    sends SIGTERM to the group, so the launcher inside stops its jobs cleanly.
    """

    name = "local"
    passes_nodes = True

    def __init__(self) -> None:
        self._processes: dict[str, asyncio.subprocess.Process] = {}

    async def submit(self, submission: Submission) -> str:
        out = _open_output(submission.output)
        try:
            process = await asyncio.create_subprocess_exec(
                "bash",
                str(submission.script),
                cwd=str(submission.script.parent),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise SchedulerError(f"cannot start {submission.script}: {exc}") from exc
        finally:
            os.close(out)
        scheduler_id = str(process.pid)
        self._processes[scheduler_id] = process
        return scheduler_id

    async def status(self, scheduler_ids: Sequence[str]) -> dict[str, SchedulerJob]:
        out = {}
        for sid in scheduler_ids:
            running = self._alive(sid)
            out[sid] = SchedulerJob(
                sid,
                BatchJobState.RUNNING if running else BatchJobState.FINISHED,
                "running" if running else "exited",
            )
        return out

    def _alive(self, scheduler_id: str) -> bool:
        process = self._processes.get(scheduler_id)
        if process is not None:
            if process.returncode is None:
                return True
            del self._processes[scheduler_id]
            return False
        # started by an earlier agent: alive while the pid exists and is not a zombie
        try:
            stat = Path(f"/proc/{int(scheduler_id)}/stat").read_text()
        except (OSError, ValueError):
            return False
        return stat.rsplit(")", 1)[-1].split()[0] != "Z"

    async def delete(self, scheduler_id: str) -> None:
        if not self._alive(scheduler_id):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.killpg(int(scheduler_id), signal.SIGTERM)

    async def wait(self, scheduler_id: str) -> int | None:
        """Wait for a job this scheduler started to end; its exit code (None if unknown)."""
        process = self._processes.get(scheduler_id)
        return None if process is None else await process.wait()

    async def close(self) -> None:
        """Forget the processes; they keep running (launchers outlive an agent restart)."""
        self._processes.clear()


def _open_output(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

"""The scheduler interface (submit, status, delete) and running its commands."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from balsam_mq.domain import BatchJobState
from balsam_mq.errors import SchedulerError


@dataclass(frozen=True)
class Submission:
    """One batch job to submit: its rendered script and what it asks for."""

    script: Path
    num_nodes: int
    wall_time_min: int
    project: str = ""
    queue: str = ""
    extra_args: tuple[str, ...] = ()

    @property
    def output(self) -> Path:
        return self.script.with_suffix(".out")


@dataclass(frozen=True)
class SchedulerJob:
    """What the scheduler says about one of our batch jobs."""

    scheduler_id: str
    state: BatchJobState  # QUEUED, RUNNING or FINISHED
    raw_state: str
    info: dict[str, Any] = field(default_factory=dict)


class Scheduler(ABC):
    """A batch scheduler as the scheduler service uses it.

    ``status`` reports the ids it was asked about; an id the scheduler no longer
    knows is reported FINISHED (it ended and left the queue).
    """

    name: ClassVar[str]
    passes_nodes: ClassVar[bool] = False  # the launcher is told --nodes (no allocation to read)

    @abstractmethod
    async def submit(self, submission: Submission) -> str: ...

    @abstractmethod
    async def status(self, scheduler_ids: Sequence[str]) -> dict[str, SchedulerJob]: ...

    @abstractmethod
    async def delete(self, scheduler_id: str) -> None: ...

    async def close(self) -> None:
        return None


async def run_command(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    ok_codes: Sequence[int] = (0,),
) -> tuple[int, str, str]:
    """Run a scheduler command; ``(returncode, stdout, stderr)``.

    A missing executable, a timeout or a return code outside ``ok_codes`` raises
    :class:`SchedulerError` with the command and its stderr.
    """
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd) if cwd else None,
            env=dict(env) if env is not None else None,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise SchedulerError(f"cannot run {argv[0]!r}: {exc}") from exc
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise SchedulerError(f"{argv[0]} did not answer within {timeout:g} s") from None
    code = process.returncode if process.returncode is not None else -1
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    if code not in ok_codes:
        detail = (stderr.strip() or stdout.strip())[-2000:]
        raise SchedulerError(f"{' '.join(argv)} failed with exit code {code}: {detail}")
    return code, stdout, stderr

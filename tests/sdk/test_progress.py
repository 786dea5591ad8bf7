"""``as_completed(jobs, progress=...)``: a bar of done, failed and remaining jobs on stderr, only
when asked for, and off a terminal only when forced; the blocking twin passes it on."""

from __future__ import annotations

import re
from typing import Any

import anyio.to_thread
import pytest

from balsam_mq import ApplicationDefinition, Job, blocking
from balsam_mq.domain import JobState
from balsam_mq.sdk import Client, Site
from balsam_mq.sdk.client import make_current, reset_current

S = JobState
Drive = Any
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Adder(ApplicationDefinition):
    site = "polaris"

    def run(self, x: int) -> int:
        return x


class Stderr:
    """What goes to stderr (pytest's capture: not a terminal)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def text(self) -> str:
        """What was written since the last call, without control codes."""
        return ANSI.sub("", self.capsys.readouterr().err)


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Stderr:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)  # rich is told nothing by the environment
    return Stderr(capsys)


async def submit(n: int) -> list[Job]:
    return await Job.objects.bulk_create(
        [Adder.submit(f"p/{i}", x=i, save=False) for i in range(n)]
    )


async def test_the_bar_counts_done_failed_and_remaining(
    memory: Client, memory_site: Site, memory_drive: Drive, stderr: Stderr
) -> None:
    jobs = await submit(4)
    await memory_drive([jobs[0].id], S.JOB_FINISHED, result=0)
    await memory_drive([jobs[1].id], S.FAILED)
    seen: list[tuple[int | None, JobState]] = []
    async for job in Job.objects.as_completed(jobs, timeout=10, progress="always"):
        seen.append((job.id, job.state))
        if len(seen) == 2:  # the two that ended first, then one more and a failure
            await memory_drive([jobs[2].id], S.JOB_FINISHED, result=2)
            await memory_drive([jobs[3].id], S.FAILED)
    assert sorted(seen) == [(1, S.JOB_FINISHED), (2, S.FAILED), (3, S.JOB_FINISHED), (4, S.FAILED)]
    text = stderr.text()
    steps = [
        "0/4 0 done · 0 failed · 4 remaining",
        "1/4 1 done · 0 failed · 3 remaining",
        "2/4 1 done · 1 failed · 2 remaining",
        "4/4 2 done · 2 failed · 0 remaining",
    ]
    positions = [text.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), text
    assert text.rstrip().endswith("4/4 2 done · 2 failed · 0 remaining")


async def test_no_bar_unless_asked_and_on_a_terminal(
    memory: Client, memory_site: Site, memory_drive: Drive, stderr: Stderr
) -> None:
    jobs = await submit(2)
    await memory_drive([j.id for j in jobs], S.JOB_FINISHED, result=0)
    assert len([j async for j in Job.objects.as_completed(jobs)]) == 2
    assert len([j async for j in Job.objects.as_completed(jobs, progress=True)]) == 2
    assert stderr.text() == ""  # True: only where stderr is a terminal
    with pytest.raises(ValueError, match="progress must be False, True or 'always'; got 'yes'"):
        Job.objects.as_completed(jobs, progress="yes")  # type: ignore[arg-type]


async def test_the_blocking_twin_shows_the_same_bar(
    memory: Client, memory_site: Site, memory_drive: Drive, stderr: Stderr
) -> None:
    jobs = await submit(3)
    await memory_drive([jobs[0].id, jobs[1].id], S.JOB_FINISHED, result=0)
    await memory_drive([jobs[2].id], S.FAILED)

    def script() -> list[int]:
        token = make_current(memory)
        try:
            mine = list(blocking.Job.objects.filter(id=[j.id for j in jobs]))
            done = blocking.Job.objects.as_completed(mine, timeout=10, progress="always")
            return sorted(job.id or 0 for job in done)
        finally:
            reset_current(token)

    assert await anyio.to_thread.run_sync(script) == [1, 2, 3]
    assert stderr.text().rstrip().endswith("3/3 2 done · 1 failed · 0 remaining")

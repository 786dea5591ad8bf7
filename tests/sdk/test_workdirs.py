"""A workdir that leads out of its site's data/ through a symlink is refused when its job is
created, where the site's directory is on this machine; elsewhere only its text is checked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from balsam_mq import ApplicationDefinition, Job
from balsam_mq.errors import JobError
from balsam_mq.sdk import Client, Site
from balsam_mq.sdk.workdirs import DataDirectory
from balsam_mq.store import Store


class Mover(ApplicationDefinition):
    site = "onsite"
    command_template = "true"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A site's data/ with ``out -> <tmp>/elsewhere`` (leading out) and ``in -> runs``."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "site" / "data" / "runs").mkdir(parents=True)
    (tmp_path / "site" / "data" / "out").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "site" / "data" / "in").symlink_to("runs")
    return tmp_path / "site" / "data"


async def test_a_workdir_through_a_symlink_out_of_data_is_refused_at_creation(
    client: Client, store: Store, data: Path
) -> None:
    await Site.objects.create(name="onsite", path=str(data.parent))
    link = f"{data / 'out'} -> {data.parent.parent / 'elsewhere'}"
    with pytest.raises(JobError) as info:
        await Mover.submit("out/1")
    assert str(info.value) == (
        f"Job 'out/1': workdir 'out/1' escapes the site's data directory through a symlink ({link})"
    )
    with pytest.raises(JobError, match=r"^Job 'out': workdir 'out' escapes"):
        await Job("out", app_id=Mover).save()
    jobs = [Mover.submit(f"runs/{i}", save=False) for i in range(100)]
    jobs.append(Mover.submit("out/deeper/2", save=False))
    with pytest.raises(JobError, match=r"^Job 'out/deeper/2': workdir 'out/deeper/2' escapes"):
        await Job.objects.bulk_create(jobs)
    assert await store.db["jobs"].count_documents({}) == 0
    jobs.pop()
    await Job.objects.bulk_create([*jobs, Job("in/1", app_id=Mover)])  # a symlink inside: fine
    assert await Job.objects.count() == 101


async def test_a_saved_job_cannot_move_through_a_symlink_out_of_data(
    client: Client, data: Path
) -> None:
    await Site.objects.create(name="onsite", path=str(data.parent))
    job = await Mover.submit("runs/1")
    job.workdir = "out/1"
    with pytest.raises(JobError, match=rf"^Job {job.id}: workdir 'out/1' escapes the site's data"):
        await job.save()
    await job.refresh()
    assert job.workdir == "runs/1"


async def test_a_site_elsewhere_has_its_workdirs_checked_as_text_only(
    memory: Client, data: Path
) -> None:
    """The client on a laptop: the site's path is not on this machine."""
    await Site.objects.create(name="onsite", path=str(data.parent / "not-here"))
    await Mover.submit("out/1")
    with pytest.raises(JobError, match=r"workdir '../x' must be relative"):
        await Mover.submit("../x")
    (data.parent / "not-here" / "data").mkdir(parents=True)  # now it is
    (data.parent / "not-here" / "data" / "out").symlink_to(data.parent.parent / "elsewhere")
    with pytest.raises(JobError, match=r"^Job 'out/2': workdir 'out/2' escapes"):
        await Mover.submit("out/2")


def test_many_workdirs_of_a_directory_are_answered_alike_once_it_is_listed(data: Path) -> None:
    """Past a few names looked up one by one, a directory is listed once; answers stay
    the same, for links at any depth and directories that do not exist yet."""
    (data / "runs" / "back").symlink_to(data)
    (data / "runs" / "away").symlink_to(data.parent.parent / "elsewhere")
    os.symlink("../../../elsewhere", data / "runs" / "up")
    checked = DataDirectory(str(data))
    workdirs = [f"runs/{i}" for i in range(100)]
    workdirs += ["runs/back/1", "runs/away", "runs/up/x", "new/a/b", "in/away/1", "runs/back/out"]
    answers = {w: checked.escape(w) is None for w in workdirs}
    assert [w for w, inside in answers.items() if not inside] == [
        "runs/away",
        "runs/up/x",
        "in/away/1",
        "runs/back/out",
    ]
    assert answers == {w: DataDirectory(str(data)).escape(w) is None for w in workdirs}

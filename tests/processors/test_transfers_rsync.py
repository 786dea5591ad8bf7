"""Stage-in and stage-out over SSH with rsync, against a real sshd on a loopback port: the
slots of a batch of jobs move in one rsync per direction, every slot has its transfer
item, and a transfer cut by sshd going away is retried until it lands, or fails its job
after ``max_attempts`` with the reason."""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from agent_helpers import S, SiteEnv, StandInLauncher
from support.sshd import SshServer, ssh_server
from support.waiting import until, wait_for_states

from balsam_mq import ApplicationDefinition, Job, TransferItem
from balsam_mq.domain import Job as JobDocument, TransferItem as TransferItemDocument, TransferState
from balsam_mq.store import Store

BATCH = 50  # the agent's batch_size: a consumer batch moves in one rsync per direction


class Remote(ApplicationDefinition):
    """Default hooks: only its transfers give the agent work."""

    site = "polaris"
    command_template = "sim input.nw"
    transfers = {
        "input_file": {"required": True, "direction": "in", "local_path": "input.nw"},
        "result": {"required": True, "direction": "out", "local_path": "result.json"},
    }


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    root = tmp_path / "sshd"
    root.mkdir()
    with ssh_server(root) as server:
        yield server


@pytest.fixture
def rsync_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each rsync process the agent starts appends a line here (a wrapper first on PATH
    that runs the real rsync)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "rsync.log"
    bin_dir.mkdir()
    wrapper = bin_dir / "rsync"
    hold = tmp_path / "hold"  # while it exists, a new rsync waits before it starts
    wrapper.write_text(
        f'#!/bin/sh\necho "$$" >> {log}\n'
        f"while [ -e {hold} ]; do sleep 0.05; done\n"
        'exec /usr/bin/rsync "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    log.touch()
    return log


def settings(sshd: SshServer, remote: Path, max_attempts: int = 5) -> str:
    uri = f"rsync://{sshd.user}@127.0.0.1:{sshd.port}{remote}"
    return (
        f"hooks: {{batch_size: {BATCH}}}\n"
        f"transfers: {{locations: {{archive: '{uri}'}}, ssh_command: '{sshd.ssh_command}', "
        f"retry_initial_s: 0.2, retry_max_s: 0.5, max_attempts: {max_attempts}}}\n"
    )


def echo_result(site: SiteEnv) -> Any:
    """The launcher's outcome: the run writes result.json from its input."""

    def run(job: JobDocument) -> tuple[S, dict[str, Any]]:
        work = site.dir.workdir(job.workdir)
        (work / "result.json").write_text("echo " + (work / "input.nw").read_text())
        return S.RUN_DONE, {"return_code": 0}

    return run


async def submit(n: int, tag: str) -> list[Job]:
    jobs = [
        Remote.submit(
            f"{tag}/{i}",
            transfers={
                "input_file": f"archive:/in/{tag}/{i}.nw",
                "result": f"archive:/out/{tag}/{i}",
            },
            save=False,
        )
        for i in range(n)
    ]
    return await Job.objects.bulk_create(jobs)


def inputs(remote: Path, tag: str, n: int) -> None:
    (remote / "in" / tag).mkdir(parents=True)
    for i in range(n):
        (remote / "in" / tag / f"{i}.nw").write_text(f"deck {i}")


async def test_hundreds_of_jobs_move_in_and_out_in_batches(
    client: Any,
    store: Store,
    site: SiteEnv,
    start_agent: Any,
    launcher: StandInLauncher,
    sshd: SshServer,
    rsync_log: Path,
    tmp_path: Path,
) -> None:
    n, remote = 300, tmp_path / "archive"
    inputs(remote, "b", n)
    launcher.outcome = echo_result(site)
    await start_agent(settings(sshd, remote))
    jobs = await submit(n, "b")
    await wait_for_states(store, [j.id for j in jobs], [S.JOB_FINISHED], 120)
    for i, job in enumerate(jobs):
        assert (site.dir.workdir(job.workdir) / "input.nw").read_text() == f"deck {i}"
        assert (remote / "out" / "b" / str(i)).read_text() == f"echo deck {i}"
    processes = len(rsync_log.read_text().split())
    # one rsync per consumer batch and direction, not one per file (600 slots here)
    assert 2 <= processes <= 2 * math.ceil(n / BATCH) + 4, processes
    items = [i async for i in TransferItem.objects.filter(site_id=site.id)]
    assert len(items) == 2 * n
    assert {i.state for i in items} == {TransferState.DONE}
    assert {(i.job_id, i.direction) for i in items} == {
        (j.id, d) for j in jobs for d in ("in", "out")
    }
    assert len({i.task_id for i in items}) == processes  # each rsync, a batch of items
    assert sum(i.bytes for i in items if i.direction == "in") == sum(
        len(f"deck {i}") for i in range(n)
    )


async def test_a_transfer_cut_by_sshd_going_away_lands_once_it_is_back(
    client: Any,
    store: Store,
    site: SiteEnv,
    start_agent: Any,
    launcher: StandInLauncher,
    sshd: SshServer,
    rsync_log: Path,
    tmp_path: Path,
) -> None:
    n, remote = 40, tmp_path / "archive"
    inputs(remote, "c", n)
    launcher.outcome = echo_result(site)
    sshd.stop()
    await start_agent(settings(sshd, remote, max_attempts=1000))
    jobs = await submit(n, "c")
    ids = [j.id for j in jobs]

    async def failing() -> bool:
        return await TransferItem.objects.filter(job_id=ids, state="error").count() == n

    await until(failing, 60)
    assert set((await store.jobs.states(ids)).values()) == {S.READY}  # nothing moved on
    item = await TransferItem.objects.filter(job_id=ids[0]).first()
    assert item is not None and item.failures >= 1 and "127.0.0.1" in (item.error or "")
    sshd.start()
    await wait_for_states(store, ids, [S.JOB_FINISHED], 120)
    for i in range(n):
        assert (remote / "out" / "c" / str(i)).read_text() == f"echo deck {i}"
    states = {i.state async for i in TransferItem.objects.filter(job_id=ids)}
    assert states == {TransferState.DONE}
    assert launcher.runs.count(ids[0]) == 1  # each job ran once


async def test_a_transfer_failing_max_attempts_times_fails_its_job_naming_why(
    client: Any,
    store: Store,
    site: SiteEnv,
    start_agent: Any,
    launcher: StandInLauncher,
    sshd: SshServer,
    tmp_path: Path,
) -> None:
    remote = tmp_path / "archive"
    inputs(remote, "f", 2)
    sshd.stop()
    await start_agent(settings(sshd, remote, max_attempts=2))
    jobs = await submit(2, "f")
    await wait_for_states(store, [j.id for j in jobs], [S.FAILED], 60)
    reason = (await store.jobs.get(jobs[0].id)).state_data["reason"]
    assert reason.startswith("stage-in failed: slot 'input_file': ")
    item = await TransferItem.objects.get(job_id=jobs[0].id, direction="in")
    assert (item.state, item.failures) == (TransferState.FAILED, 2)
    assert launcher.runs == []


async def test_an_agent_stopped_in_the_middle_of_a_batch_loses_and_repeats_nothing(
    client: Any,
    store: Store,
    site: SiteEnv,
    start_agent: Any,
    launcher: StandInLauncher,
    sshd: SshServer,
    rsync_log: Path,
    tmp_path: Path,
) -> None:
    n, remote = 20, tmp_path / "archive"
    inputs(remote, "k", n)
    launcher.outcome = echo_result(site)
    hold = tmp_path / "hold"
    hold.touch()
    first = await start_agent(settings(sshd, remote))
    jobs = await submit(n, "k")
    ids = [j.id for j in jobs]

    async def in_flight() -> bool:
        return bool(rsync_log.read_text()) and (
            await TransferItem.objects.filter(job_id=ids, state="active").count() == n
        )

    await until(in_flight, 30)
    await first.stop(grace=0)  # its batch's rsync is cut; the message goes back to the queue
    assert set((await store.jobs.states(ids)).values()) == {S.READY}
    hold.unlink()
    await start_agent(settings(sshd, remote))
    await wait_for_states(store, ids, [S.JOB_FINISHED], 60)
    for i in range(n):
        assert (remote / "out" / "k" / str(i)).read_text() == f"echo deck {i}"
    assert sorted(launcher.runs) == sorted(ids)  # every job ran, once


async def test_a_slot_already_done_is_not_moved_again(
    client: Any,
    store: Store,
    site: SiteEnv,
    start_agent: Any,
    launcher: StandInLauncher,
    sshd: SshServer,
    rsync_log: Path,
    tmp_path: Path,
) -> None:
    """What a redelivered batch finds after an agent died between moving a slot and
    moving its job: the item says DONE, so only the job moves on."""
    remote = tmp_path / "archive"
    inputs(remote, "d", 1)
    launcher.outcome = echo_result(site)
    (job,) = await submit(1, "d")
    assert job.id is not None and site.site.id is not None
    work = site.dir.workdir(job.workdir)
    work.mkdir(parents=True)
    (work / "input.nw").write_text("deck 0")
    done = TransferItemDocument(
        job_id=job.id,
        site_id=site.site.id,
        slot="input_file",
        direction="in",
        location="archive",
        protocol="rsync",
        remote_path=str(remote / "in" / "d" / "0.nw"),
        local_path=str(work / "input.nw"),
        state=TransferState.DONE,
        task_id="rsync-earlier",
    )
    await store.transfer_items.record([done])
    await start_agent(settings(sshd, remote))
    await wait_for_states(store, [job.id], [S.JOB_FINISHED], 60)
    assert len(rsync_log.read_text().split()) == 1  # the stage-out alone
    item = await TransferItem.objects.get(job_id=job.id, direction="in")
    assert item.task_id == "rsync-earlier"


@pytest.fixture
def slow_rsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """rsync limited to 512 KB/s (a wrapper first on PATH), so a transfer is still running
    when a test cuts it."""
    bin_dir = tmp_path / "slow-bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "rsync"
    wrapper.write_text('#!/bin/sh\nexec /usr/bin/rsync --bwlimit=512 "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


async def test_a_transfer_cut_in_the_middle_resumes_once_sshd_is_back(
    client: Any,
    store: Store,
    site: SiteEnv,
    start_agent: Any,
    launcher: StandInLauncher,
    sshd: SshServer,
    slow_rsync: None,
    tmp_path: Path,
) -> None:
    n, remote = 3, tmp_path / "archive"
    (remote / "in" / "m").mkdir(parents=True)
    decks = [os.urandom(256 * 1024).hex() for _ in range(n)]  # 512 KiB of text each
    for i, deck in enumerate(decks):
        (remote / "in" / "m" / f"{i}.nw").write_text(deck)
    launcher.outcome = echo_result(site)
    await start_agent(settings(sshd, remote, max_attempts=1000))
    jobs = await submit(n, "m")
    ids = [j.id for j in jobs]

    def partly_there() -> bool:  # rsync writes into a temporary file of the staging tree
        return any(
            f.name.startswith(".") and f.stat().st_size > 0
            for f in site.dir.staging.rglob("*")
            if f.is_file()
        )

    async def arriving() -> bool:
        return await anyio.to_thread.run_sync(partly_there)

    await until(arriving, 60)
    sshd.stop()  # the session carrying the transfer is killed with the daemon

    async def failed_once() -> bool:
        return await TransferItem.objects.filter(job_id=ids, failures__gte=1).count() == n

    await until(failed_once, 60)
    assert set((await store.jobs.states(ids)).values()) == {S.READY}
    assert not any((site.dir.workdir(j.workdir) / "input.nw").exists() for j in jobs)
    sshd.start()
    await wait_for_states(store, ids, [S.JOB_FINISHED], 120)
    for i, job in enumerate(jobs):
        assert (site.dir.workdir(job.workdir) / "input.nw").read_text() == decks[i]
        assert (remote / "out" / "m" / str(i)).read_text() == "echo " + decks[i]
    assert sorted(launcher.runs) == sorted(ids)

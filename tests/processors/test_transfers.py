"""Stage-in and stage-out with the local protocol, and jobs that wait for their input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_helpers import S, SiteEnv, StandInLauncher
from support.waiting import until, wait_for_states

from balsam_mq import ApplicationDefinition
from balsam_mq.store import Store

LOCATIONS = "transfers: {locations: {laptop: local}, retry_initial_s: 0.2, retry_max_s: 1}\n"


class Sim(ApplicationDefinition):
    site = "polaris"
    command_template = "sim input.nw"
    transfers = {
        "input_file": {"required": True, "direction": "in", "local_path": "input.nw"},
        "inputs": {"required": False, "direction": "in", "local_path": "inputs", "recursive": True},
        "result": {"required": True, "direction": "out", "local_path": "result.json"},
    }

    def postprocess(self) -> None:
        with open("input.nw") as f:
            payload = f.read()
        with open("result.json", "w") as f:
            f.write('{"echo": "' + payload + '"}')
        self.job.state = "POSTPROCESSED"


async def test_stage_in_file_and_directory_then_stage_out(
    client: Any,
    store: Store,
    site: SiteEnv,
    start_agent: Any,
    launcher: StandInLauncher,
    tmp_path: Path,
) -> None:
    src = tmp_path / "laptop"
    (src / "deck").mkdir(parents=True)
    (src / "in.dat").write_text("hello")
    (src / "deck" / "a.txt").write_text("A")
    (src / "deck" / "sub").mkdir()
    (src / "deck" / "sub" / "b.txt").write_text("B")
    await start_agent(LOCATIONS)
    job = await Sim.submit(
        "t/1",
        transfers={
            "input_file": f"laptop:{src / 'in.dat'}",
            "inputs": f"laptop:{src / 'deck'}",
            "result": f"laptop:{tmp_path / 'out' / 'result.json'}",
        },
    )
    await wait_for_states(store, [job.id], [S.JOB_FINISHED], 60)
    work = site.dir.workdir("t/1")
    assert (work / "input.nw").read_text() == "hello"
    assert (work / "inputs" / "a.txt").read_text() == "A"
    assert (work / "inputs" / "sub" / "b.txt").read_text() == "B"
    assert (tmp_path / "out" / "result.json").read_text() == '{"echo": "hello"}'


async def test_job_waits_in_ready_until_its_input_appears(
    client: Any,
    store: Store,
    site: SiteEnv,
    start_agent: Any,
    launcher: StandInLauncher,
    tmp_path: Path,
) -> None:
    await start_agent(LOCATIONS)
    late = tmp_path / "late.dat"
    job = await Sim.submit(
        "t/late",
        transfers={
            "input_file": f"laptop:{late}",
            "result": f"laptop:{tmp_path / 'late-out.json'}",
        },
    )

    async def waiting() -> bool:
        doc = await store.jobs.get(job.id)
        return doc.state_data.get("waiting_for") == [str(late)]

    await until(waiting, 30)
    assert (await store.jobs.get(job.id)).state == S.READY
    late.write_text("finally")
    await wait_for_states(store, [job.id], [S.JOB_FINISHED], 60)
    assert (tmp_path / "late-out.json").read_text() == '{"echo": "finally"}'


async def test_unknown_location_alias_fails_the_job_with_the_reason(
    client: Any,
    store: Store,
    site: SiteEnv,
    start_agent: Any,
    launcher: StandInLauncher,
    tmp_path: Path,
) -> None:
    await start_agent(LOCATIONS)
    job = await Sim.submit(
        "t/bad", transfers={"input_file": "nowhere:/x", "result": "laptop:/tmp/x"}
    )
    await wait_for_states(store, [job.id], [S.FAILED], 30)
    reason = (await store.jobs.get(job.id)).state_data["reason"]
    assert "unknown location alias 'nowhere'" in reason


class Messy(ApplicationDefinition):
    site = "polaris"
    command_template = "x"
    cleanup_files = ["*.tmp"]

    def postprocess(self) -> None:
        import os

        for name in ("a.tmp", "b.tmp", "keep.out"):
            with open(name, "w") as f:
                f.write(name)
        os.symlink(self.job.data["sentinel"], "link.tmp")  # points outside the workdir
        self.job.state = "POSTPROCESSED"


async def test_file_cleaner_deletes_globs_of_finished_jobs_only_inside_workdir(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    sentinel = site.dir.data / "sentinel.txt"
    sentinel.write_text("outside the workdir")
    await start_agent("file_cleaner: {enabled: true}\n")
    job = await Messy.submit("m/1", data={"sentinel": str(sentinel)})
    work = site.dir.workdir("m/1")
    await wait_for_states(store, [job.id], [S.JOB_FINISHED], 60)

    async def cleaned() -> bool:
        gone = [
            not (work / n).is_symlink() and not (work / n).exists()
            for n in ("a.tmp", "b.tmp", "link.tmp")
        ]
        return all(gone)

    await until(cleaned, 30)
    assert (work / "keep.out").exists()
    assert sentinel.read_text() == "outside the workdir"  # the link went, not its target

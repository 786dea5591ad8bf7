"""README.md's Quick start and worked example, pasted into scripts as a user would and run
against a real site agent and launcher (the code blocks are read from the README)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from aio_pika.abc import AbstractRobustConnection
from support.waiting import until, wait_for_states

from balsam_mq.broker import Topology
from balsam_mq.domain import JobState, Site
from balsam_mq.launcher.config import LauncherConfig, LauncherSettings
from balsam_mq.launcher.main import build_allocation
from balsam_mq.launcher.pilot import Pilot
from balsam_mq.processors.agent import SiteAgent
from balsam_mq.settings import Settings
from balsam_mq.site.config import parse_config
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.store import Store

README = Path(__file__).resolve().parents[2] / "README.md"
S = JobState


def section(title: str) -> str:
    """The text of the README section whose ``##`` heading starts with ``title``."""
    text = README.read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


QUICK_START = blocks(section("Quick start"), "python")
WORKED = blocks(section("A worked example"), "python")
WORKED_YAML = blocks(section("A worked example"), "yaml")


def test_the_readme_has_the_blocks_this_test_runs() -> None:
    assert len(QUICK_START) == 1 and len(WORKED) == 1 and len(WORKED_YAML) == 1
    for script in (*QUICK_START, *WORKED):
        compile(script, "README.md", "exec")  # a top-level `await` would not compile
    assert 'site = "laptop"' in QUICK_START[0] and 'site = "laptop"' in WORKED[0]


@pytest.fixture
async def laptop(
    store: Store,
    amqp: AbstractRobustConnection,
    topology: Topology,
    settings: Settings,
    tmp_path: Path,
) -> AsyncIterator[SiteDirectory]:
    """Site "laptop" with the settings.yml lines the README shows, its agent and a launcher
    running in this process (as `balsam-mq site start` and `balsam-mq launcher` would)."""
    site = await store.sites.create(Site(name="laptop", path=str(tmp_path / "site")))
    assert site.id is not None
    site_dir = SiteDirectory.create(tmp_path / "site", name="laptop", site_id=site.id)
    text = site_dir.settings_file.read_text() + "\n" + WORKED_YAML[0]
    site_dir.settings_file.write_text(text)
    agent = SiteAgent(store, amqp, topology, site, site_dir, parse_config(text), window=0.01)
    agent_task = asyncio.create_task(agent.run())
    config = LauncherConfig(
        site_id=site.id,
        data_dir=site_dir.data,
        wall_time_min=5,
        settings=LauncherSettings(heartbeat_s=0.5, kill_grace_s=1, unfit_delay_s=1),
    )
    pool, executor = await build_allocation(config)
    pilot = Pilot(store, amqp, topology, config, pool=pool, executor=executor)
    pilot_task = asyncio.create_task(pilot.run())
    try:
        yield site_dir
    finally:
        pilot.request_stop("test over")
        await asyncio.wait_for(pilot_task, 30)
        started = time.monotonic()
        await agent.stop(grace=5)
        await asyncio.wait_for(agent_task, 15 - min(10.0, time.monotonic() - started))


async def run_script(code: str, settings: Settings, tmp_path: Path) -> str:
    """``code`` saved as a file and run with python, as a user runs it: its stdout."""
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {
        **os.environ,
        "BALSAM_MONGODB_URL": settings.mongodb_url,
        "BALSAM_AMQP_URL": settings.amqp_url,
        "BALSAM_DB": settings.db,
        "BALSAM_NAMESPACE": settings.namespace,
    }
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, str(script)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_quick_start_runs_as_written(
    laptop: SiteDirectory, settings: Settings, tmp_path: Path
) -> None:
    out = (await run_script(QUICK_START[0], settings, tmp_path)).splitlines()
    assert out[0] == "10"
    results = dict(line.split() for line in out[1:])
    assert sorted(int(v) for v in results.values()) == [i + 1 for i in range(len(results))]
    assert len(results) == int(re.findall(r"range\((\d+)\)", QUICK_START[0])[0])


SOLVER = """#!/bin/sh
# a stand-in for the README's solver: prints an energy, or fails on a license error
echo "$@" > solver-args.scratch
{body}
"""
SOLVES = 'echo "converged: energy -76.25"'
NO_LICENSE = 'echo "error: license server not reachable" >&2; exit 1'


async def test_worked_example_runs_and_retries_license_errors_as_it_says(
    laptop: SiteDirectory,
    store: Store,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the README's absolute paths (/data/...) live under the test's directory
    assert "laptop:/data/" in WORKED[0]
    data = tmp_path / "data"
    code = WORKED[0].replace("laptop:/data/", f"laptop:{data}/")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    solver = bin_dir / "solver"
    solver.write_text(SOLVER.format(body=SOLVES))
    solver.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    job_id = int((await run_script(code, settings, tmp_path)).split()[0])
    assert (await store.jobs.get(job_id)).state is S.READY  # no deck yet: it waits
    (data / "decks").mkdir(parents=True)
    (data / "decks" / "h2o.nw").write_text("water\n")
    await wait_for_states(store, [job_id], [S.JOB_FINISHED, S.FAILED], timeout=30)
    job = await store.jobs.get(job_id)
    assert job.state is S.JOB_FINISHED, job.state_data
    assert job.data["energy"] == -76.25 and job.data["prepared_on"]
    assert json.loads((data / "results" / "h2o.json").read_text()) == {"energy": -76.25}
    workdir = laptop.workdir("ensemble/1")
    assert (workdir / "result.txt").read_text().count("energy -76.25") == 2  # two ranks
    await until(lambda: not list(workdir.glob("*.scratch")), 10)  # the file cleaner's work

    # a license error is retried max_retries (2) times, then the job fails saying why
    solver.write_text(SOLVER.format(body=NO_LICENSE))
    job_id = int((await run_script(code, settings, tmp_path)).split()[0])
    await wait_for_states(store, [job_id], [S.FAILED], timeout=30)
    job = await store.jobs.get(job_id)
    assert job.restarts == 2
    assert "max_retries=2" in job.state_data["reason"]
    runs = [e async for e in store.events.iterate(job_id=job_id, to_state="RUNNING")]
    assert len(runs) == 3

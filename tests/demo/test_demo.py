"""`balsam-mq demo` end to end, as a user runs it: a real agent and launcher, real jobs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio

from balsam_mq.settings import Settings
from balsam_mq.store import Store


async def test_demo_runs_jobs_to_the_end_and_cleans_up(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "BALSAM_MONGODB_URL": settings.mongodb_url,
        "BALSAM_AMQP_URL": settings.amqp_url,
        "BALSAM_DB": settings.db,
        "BALSAM_NAMESPACE": settings.namespace,
        "BALSAM_STACK_DIR": str(tmp_path / "stack"),
    }
    command = [
        sys.executable,
        "-m",
        "balsam_mq.cli",
        "demo",
        "--dir",
        str(tmp_path / "demo"),
        "--shell-jobs",
        "20",
        "--python-jobs",
        "20",
        "--parsed-jobs",
        "10",
    ]
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "submitted 51 jobs" in out
    assert "Adder(3, 9) = 12" in out  # a Python result, through job.result()
    assert "n = 2: -6.0 eV" in out  # parsed from job.out by the postprocess hook
    assert "jobs by state: JOB_FINISHED 51" in out
    assert "jobs/s" in out
    # it removed what it created: the site and its jobs (the event log stays)
    assert await store.db["sites"].count_documents({}) == 0
    assert await store.db["jobs"].count_documents({}) == 0
    assert await store.events.count(to_state="JOB_FINISHED") == 51

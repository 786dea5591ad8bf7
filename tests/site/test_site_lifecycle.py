"""`balsam-mq site start | status | reload | stop` against the real stack: a background agent,
a real launcher, launcher sessions from heartbeats, a settings reload that applies and one
that is refused, the drain on stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
import yaml
from support.driving import drive_jobs, running_job
from support.waiting import process_gone, until, wait_for_states
from typer.testing import CliRunner, Result

from balsam_mq.broker import Topology
from balsam_mq.cli import app as cli_app
from balsam_mq.domain import App, Job, JobState, Session, Site, utcnow
from balsam_mq.settings import Settings
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.site.pidfile import AgentRecord
from balsam_mq.store import Store

S = JobState
NAME = "lifecycle"
# fast reaper passes and launcher heartbeats; no warm pool to start
BASE: dict[str, Any] = {
    "reaper": {"interval_s": 0.2},
    "launcher": {"heartbeat_s": 1, "warm_pool": False, "kill_grace_s": 1},
}


async def cli(*args: str) -> Result:
    runner = CliRunner()
    return await anyio.to_thread.run_sync(
        lambda: runner.invoke(cli_app, list(args), catch_exceptions=False)
    )


def write_settings(site_dir: SiteDirectory, site_id: int, sections: dict[str, Any]) -> None:
    text = yaml.safe_dump({"site_id": site_id, "name": NAME, **sections})
    site_dir.settings_file.write_text(text)


def pid_in(pid_file: Path) -> int:
    return int(json.loads(pid_file.read_text())["pid"])


def log_has(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text()


@pytest.fixture
async def site(
    store: Store, topology: Topology, settings: Settings, tmp_path: Path, monkeypatch: Any
) -> AsyncIterator[tuple[SiteDirectory, int]]:
    """A site directory with fast settings, the test's services in the environment (the
    agent and launcher processes inherit it); whatever still runs at the end is killed."""
    for key, value in {
        "BALSAM_MONGODB_URL": settings.mongodb_url,
        "BALSAM_AMQP_URL": settings.amqp_url,
        "BALSAM_DB": settings.db,
        "BALSAM_NAMESPACE": settings.namespace,
    }.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "site"
    created = await store.sites.create(Site(name=NAME, path=str(path)))
    assert created.id is not None
    site_dir = SiteDirectory.create(path, name=NAME, site_id=created.id)
    write_settings(site_dir, created.id, BASE)
    yield site_dir, created.id
    if site_dir.pid_file.exists():  # a failed test: do not leave its agent behind
        with contextlib.suppress(ProcessLookupError, ValueError, KeyError):
            pid = pid_in(site_dir.pid_file)
            if pid != os.getpid():  # not the stale record the test wrote (naming itself)
                os.kill(pid, signal.SIGKILL)


async def silent_session(store: Store, site_id: int, seconds: float) -> tuple[int, int]:
    """A session last heard of ``seconds`` ago, holding one RUNNING job: (session, job)."""
    session = await store.sessions.create(
        Session(site_id=site_id, hostname="nid01", pid=4242, batch_job_id=7)
    )
    assert session.id is not None
    await store.db["sessions"].update_one(
        {"_id": session.id}, {"$set": {"heartbeat": utcnow() - timedelta(seconds=seconds)}}
    )
    return session.id, await running_job(store, session.id, site_id=site_id, app_id=999)


async def start_launcher(site_id: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "balsam_mq.cli", "launcher",
        "--site", str(site_id), "--wall-time", "5", "--cores-per-node", "2",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def test_start_status_reload_stop(store: Store, site: tuple[SiteDirectory, int]) -> None:
    site_dir, site_id = site
    log = site_dir.agent_log
    # a pid file left by a process that is gone (its pid now names another one: this test)
    stale = AgentRecord(os.getpid(), socket.gethostname(), utcnow(), proc_start=1, state="running")
    site_dir.pid_file.write_text(stale.to_json())

    # start: in the background, the stale pid file cleaned, a second start refused
    started = await cli("site", "start", str(site_dir.path))
    assert started.exit_code == 0, (started.stdout, started.stderr)
    pid = pid_in(site_dir.pid_file)
    assert started.stdout.strip() == f"agent of site {NAME!r} running (pid {pid}); log: {log}"
    assert f"removed a stale pid file (pid {os.getpid()} on" in started.stderr
    assert json.loads(site_dir.pid_file.read_text())["state"] == "running"
    assert os.getsid(pid) == pid  # a session of its own
    assert log_has(log, f"site agent for {NAME!r} (site {site_id}) running")
    again = await cli("site", "start", str(site_dir.path))
    assert again.exit_code == 1
    assert f"error: the agent of site {NAME!r} already runs (pid {pid}, since" in again.stderr
    assert pid_in(site_dir.pid_file) == pid

    launcher = await start_launcher(site_id)
    try:
        # status: the agent, a real launcher running a job, a silent session
        sleeper = await store.apps.upsert(
            App(site_id=site_id, name="Sleeper", command_template="sleep 60", hooks=[])
        )
        assert sleeper.id is not None
        (job,) = await store.jobs.create_many(
            [Job(app_id=sleeper.id, site_id=site_id, workdir="s/1")]
        )
        assert job.id is not None
        await drive_jobs(store, [job.id], S.PREPROCESSED)
        await wait_for_states(store, [job.id], [S.RUNNING], 30)
        silent, silent_job = await silent_session(store, site_id, 30)

        status = await cli("site", "status", str(site_dir.path), "--json")
        assert status.exit_code == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["agent"]["state"] == "running" and report["agent"]["pid"] == pid
        assert report["site"] == {"id": site_id, "name": NAME, "path": str(site_dir.path)}
        sessions = {s["id"]: s for s in report["sessions"]}
        (live,) = [s for i, s in sessions.items() if i != silent]
        assert (live["state"], live["host"], live["pid"], live["batch_job_id"]) == (
            "alive",
            socket.gethostname(),
            launcher.pid,
            None,
        )
        assert live["running_jobs"] == 1
        assert {k: sessions[silent][k] for k in ("state", "host", "pid", "batch_job_id")} == {
            "state": "silent", "host": "nid01", "pid": 4242, "batch_job_id": 7
        }  # fmt: skip
        assert sessions[silent]["running_jobs"] == 1
        plain = await cli("site", "status", str(site_dir.path))
        assert plain.exit_code == 0
        assert plain.stdout.startswith(f"agent: running, pid {pid} on {socket.gethostname()}")
        assert "launcher sessions: 2 (1 alive)" in plain.stdout

        # reload: the reaper's grace applies at once (the silent session is reaped with it),
        # the launcher section is for new launchers, the hook pool needs a restart
        write_settings(
            site_dir,
            site_id,
            {
                "reaper": {"interval_s": 0.2, "grace_s": 10},
                "hooks": {"workers": 3},
                "launcher": {**BASE["launcher"], "idle_timeout_s": 30},
            },
        )
        reloaded = await cli("site", "reload", str(site_dir.path))
        assert reloaded.exit_code == 0, reloaded.stderr
        await until(lambda: log_has(log, "settings.yml reloaded: applied now"), 20)
        assert log_has(
            log,
            "settings.yml reloaded: applied now: reaper.grace_s 60 → 10; "
            "for launchers started from now on: launcher.idle_timeout_s null → 30",
        )
        restart = (
            "WARNING balsam_mq.agent: settings.yml: not applied, these changes need a restart "
            "of the agent (it runs on with the current values): hooks.workers 2 → 3"
        )
        await until(lambda: log_has(log, restart), 20)  # logged just after the line above
        await wait_for_states(store, [silent_job], [S.RUN_TIMEOUT, S.FAILED], 20)
        lost = await store.sessions.raw(silent)
        assert lost is not None and lost["stop_reason"] == "no heartbeat for 10 s"
        assert (await store.jobs.get(job.id)).state is S.RUNNING  # the live launcher's
        # one line per batch: the timeout consumer's batch that took the reaped job
        await until(lambda: log_has(log, f".{site_id}.timeout: batch of 1 message(s) handled"), 20)

        # a malformed file: refused by `reload`, and by the agent itself on a bare SIGHUP,
        # which keeps every current setting (not the file's valid grace_s either)
        write_settings(
            site_dir,
            site_id,
            {
                "reaper": {"interval_s": 0.2, "grace_s": 20},
                "hooks": {"workers": 3, "batch_size": -1},
            },
        )
        refused = await cli("site", "reload", str(site_dir.path))
        problem = f"{site_dir.settings_file}: hooks.batch_size: Input should be greater than or "
        problem += "equal to 1"
        assert (refused.exit_code, refused.stderr.strip()) == (1, f"error: {problem}")
        os.kill(pid, signal.SIGHUP)
        kept = f"settings.yml not reloaded, the agent keeps its current settings: {problem}"
        await until(lambda: log_has(log, kept), 20)
        second, second_job = await silent_session(store, site_id, 15)
        await wait_for_states(store, [second_job], [S.RUN_TIMEOUT, S.FAILED], 20)
        lost = await store.sessions.raw(second)
        assert lost is not None and lost["stop_reason"] == "no heartbeat for 10 s"
    finally:
        if launcher.returncode is None:
            launcher.send_signal(signal.SIGTERM)
        await asyncio.wait_for(launcher.wait(), 30)
    launcher_log = site_dir.logs / f"launcher-{socket.gethostname()}-{launcher.pid}.log"
    text = launcher_log.read_text()
    assert f"launcher log: {launcher_log}" in text and "committed 1 run outcome(s)" in text
    assert f".{site_id}.runnable: batch of 1 message(s) handled" in text

    # stop: SIGTERM, the drain, the pid file gone; status then says so with exit code 1
    stopped = await cli("site", "stop", str(site_dir.path))
    assert stopped.exit_code == 0, stopped.stderr
    assert (
        stopped.stdout.strip()
        == f"agent of site {NAME!r} stopped (pid {pid} on {socket.gethostname()})"
    )
    assert process_gone(pid) and not site_dir.pid_file.exists()
    assert log_has(log, "received SIGTERM: draining")
    assert log_has(log, f"site agent for {NAME!r} stopped")
    after = await cli("site", "status", str(site_dir.path))
    assert after.exit_code == 1
    assert after.stdout.splitlines()[0] == "agent: not running"
    assert (await cli("site", "stop", str(site_dir.path))).stdout.strip() == (
        f"no agent of site {NAME!r} is running"
    )


async def test_status_of_a_directory_that_is_no_site(tmp_path: Path) -> None:
    result = await cli("site", "status", str(tmp_path))
    assert result.exit_code == 4
    assert result.stderr.startswith(f"error: {tmp_path / 'settings.yml'}: no such settings file")

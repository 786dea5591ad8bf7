"""The agent's pid file: one live holder, stale files (gone or reused pids) taken over, and
log files rotated as the site's `logs:` settings say."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from pathlib import Path

from balsam_mq.domain import utcnow
from balsam_mq.site.config import LogSettings
from balsam_mq.site.logs import apply_rotation, rotating_handler
from balsam_mq.site.pidfile import AgentRecord, Liveness, claim, find_agent, proc_start


def _record(pid: int, *, started: int | None = None) -> str:
    record = AgentRecord(pid, socket.gethostname(), utcnow(), started, state="running")
    return record.to_json()


def test_one_holder_and_its_release(tmp_path: Path) -> None:
    pid_file = tmp_path / "agent.pid"
    assert find_agent(pid_file).liveness is Liveness.NOT_RUNNING
    held = claim(pid_file)
    assert held is not None and held.record.pid == os.getpid()
    assert held.record.proc_start == proc_start(os.getpid())
    assert find_agent(pid_file).liveness is Liveness.STARTING
    assert claim(pid_file) is None  # a live holder: refused
    held.mark_running()
    found = find_agent(pid_file)
    assert found.liveness is Liveness.RUNNING and found.record == held.record
    held.release()
    assert not pid_file.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary file left


def test_stale_files_are_taken_over(tmp_path: Path) -> None:
    pid_file = tmp_path / "agent.pid"
    child = subprocess.Popen(["true"])
    child.wait()  # a pid that is gone
    reused = _record(os.getpid(), started=1)  # our pid, another process's start time
    for text in (_record(child.pid), reused, "garbage"):
        pid_file.write_text(text)
        assert find_agent(pid_file).liveness is Liveness.STALE
        held = claim(pid_file)
        assert held is not None and find_agent(pid_file).record == held.record
        held.release()


def test_a_file_of_another_host_is_left_alone(tmp_path: Path) -> None:
    pid_file = tmp_path / "agent.pid"
    pid_file.write_text(AgentRecord(1, "elsewhere.example", utcnow()).to_json())
    found = find_agent(pid_file)
    assert found.liveness is Liveness.ELSEWHERE and not found.alive
    assert claim(pid_file) is None and found.path.exists()


def test_a_log_is_rotated_by_size_and_count(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "agent.log"
    handler = rotating_handler(path, LogSettings(max_mb=2 / 1024, backups=2))  # 2 KiB
    log = logging.getLogger("test_rotation")
    log.propagate = False
    log.addHandler(handler)
    try:
        for i in range(100):
            log.warning("line %03d %s", i, "x" * 50)
        files = sorted(p.name for p in path.parent.iterdir())
        assert files == ["agent.log", "agent.log.1", "agent.log.2"]
        assert all(p.stat().st_size <= 2048 for p in path.parent.iterdir())
        assert "line 099" in path.read_text()
        apply_rotation(handler, LogSettings(max_mb=2 / 1024, backups=3))
        for i in range(100):
            log.warning("more %03d %s", i, "x" * 50)
        assert (path.parent / "agent.log.3").exists()
        assert not (path.parent / "agent.log.4").exists()
    finally:
        log.removeHandler(handler)
        handler.close()

"""The site agent's pid file, ``<site>/agent.pid``: which process runs the site's agent.

`site start` refuses to start a second agent while the file names a live one; `stop`,
`status` and `reload` find the agent through it. The file is JSON: the agent's pid, host,
start time, its process's start time (Linux: clock ticks since boot, so that a pid reused
by another process is not taken for the agent) and its state (``starting``, then
``running``). The agent creates it atomically (a complete file linked into place, which
fails if one exists) and removes it when it exits. A file whose process is gone is
*stale*: the next agent, `site start` and `site stop` remove it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from balsam_mq.domain import utcnow


class Liveness(StrEnum):
    RUNNING = "running"
    STARTING = "starting"
    NOT_RUNNING = "not running"  # no pid file
    STALE = "stale"  # the file names a process that is gone
    ELSEWHERE = "elsewhere"  # the file names a process on another host: not checkable here


@dataclass(frozen=True)
class AgentRecord:
    """What the pid file says."""

    pid: int
    host: str
    started_at: datetime
    proc_start: int | None = None
    state: str = "starting"

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "started_at": self.started_at.isoformat()})

    @classmethod
    def parse(cls, text: str) -> AgentRecord | None:
        """The record in ``text``; None if it is not one (a truncated or foreign file)."""
        try:
            raw: dict[str, Any] = json.loads(text)
            return cls(
                pid=int(raw["pid"]),
                host=str(raw["host"]),
                started_at=datetime.fromisoformat(raw["started_at"]),
                proc_start=None if raw.get("proc_start") is None else int(raw["proc_start"]),
                state=str(raw.get("state", "starting")),
            )
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True)
class AgentFound:
    """The agent a pid file names, and whether it lives."""

    path: Path
    liveness: Liveness
    record: AgentRecord | None = None

    @property
    def alive(self) -> bool:
        return self.liveness in (Liveness.RUNNING, Liveness.STARTING)


def find_agent(pid_file: Path) -> AgentFound:
    """Read ``pid_file`` and check its process (on this host only)."""
    try:
        text = pid_file.read_text()
    except FileNotFoundError:
        return AgentFound(pid_file, Liveness.NOT_RUNNING)
    record = AgentRecord.parse(text)
    if record is None:
        return AgentFound(pid_file, Liveness.STALE)
    if record.host != socket.gethostname():
        return AgentFound(pid_file, Liveness.ELSEWHERE, record)
    if not process_alive(record.pid, record.proc_start):
        return AgentFound(pid_file, Liveness.STALE, record)
    state = Liveness.RUNNING if record.state == "running" else Liveness.STARTING
    return AgentFound(pid_file, state, record)


def remove_stale(found: AgentFound) -> None:
    """Remove the file ``found`` read, unless another agent has replaced it since."""
    if found.alive or found.liveness is Liveness.ELSEWHERE:
        raise ValueError(f"{found.path} names a live agent")
    now = find_agent(found.path)
    if now.liveness is Liveness.STALE and now.record == found.record:
        with contextlib.suppress(FileNotFoundError):
            found.path.unlink()


class PidFileClaim:
    """This process's hold on the pid file: :meth:`mark_running`, then :meth:`release`."""

    def __init__(self, path: Path, record: AgentRecord) -> None:
        self.path = path
        self.record = record

    def mark_running(self) -> None:
        self.record = replace(self.record, state="running")
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(self.record.to_json())
        os.replace(tmp, self.path)

    def release(self) -> None:
        """Remove the file if it still names this process."""
        found = AgentRecord.parse(_read(self.path))
        if found is not None and (found.pid, found.host) == (self.record.pid, self.record.host):
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def claim(pid_file: Path) -> PidFileClaim | None:
    """Take ``pid_file`` for this process (removing a stale one); None if a live agent,
    or one on another host, holds it."""
    pid = os.getpid()
    record = AgentRecord(
        pid=pid, host=socket.gethostname(), started_at=utcnow(), proc_start=proc_start(pid)
    )
    tmp = pid_file.with_name(f".{pid_file.name}.{pid}")
    tmp.write_text(record.to_json())
    try:
        for _ in range(3):
            try:
                _place(tmp, pid_file, record)
            except FileExistsError:
                found = find_agent(pid_file)
                if found.alive or found.liveness is Liveness.ELSEWHERE:
                    return None
                remove_stale(found)
                continue
            return PidFileClaim(pid_file, record)
        return None
    finally:
        tmp.unlink(missing_ok=True)


def _place(tmp: Path, pid_file: Path, record: AgentRecord) -> None:
    """``pid_file`` created with ``record``; FileExistsError if it exists."""
    try:
        os.link(tmp, pid_file)  # atomic, complete, and refused if the file exists
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links: exclusive creation, then the text
        fd = os.open(pid_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(record.to_json())


def process_alive(pid: int, started: int | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, where ``/proc`` tells, started at ``started``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    stat = _stat(pid)
    if stat is None:  # gone since, or no procfs (macOS) and then the pid is all we know
        return not Path("/proc/self").exists()
    state, start = stat
    if state in ("Z", "X"):
        return False
    return started is None or start == started


def proc_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (None without ``/proc``)."""
    stat = _stat(pid)
    return None if stat is None else stat[1]


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()  # the command name may hold spaces
    return fields[0], int(fields[19])  # fields 3 (state) and 22 (starttime) of proc(5)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""

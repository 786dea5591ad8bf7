"""The sentinel: a small process that ends the launcher's jobs if the launcher dies.

Jobs run in process groups of their own, started directly (no wrapper shell, no
per-job helper). The launcher tells the sentinel each group it starts (``+<pgid>``)
and each that ended (``-<pgid>``), one line each on the sentinel's stdin. When the
launcher dies, however it dies, the sentinel sees its stdin close (and on Linux gets
SIGTERM at once, its parent-death signal): it sends SIGTERM to every group still
registered, and SIGKILL to those left after ``grace`` seconds. It runs in a session of
its own, so a signal to the launcher's process group does not take it along.

A job started in the instant before the launcher died may not be registered yet: every
job's environment names the sentinel (``BALSAM_SENTINEL=<its pid>``), and at the end
the sentinel also ends the groups of the processes it finds with that mark (Linux, in
``/proc``).

It reads its stdin twice a second, not on every line: starting a job costs the
launcher one pipe write and the sentinel nothing.

    python -m balsam_mq.launcher.sentinel <grace seconds>
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from balsam_mq.orphans import die_with_parent

_READ_EVERY_S = 0.5
MARK = "BALSAM_SENTINEL"  # in every job's environment: the pid of the sentinel watching it


def _signal_groups(groups: set[int], signum: int) -> set[int]:
    """Signal each group; those that still exist."""
    alive = set()
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)
            alive.add(pgid)
    return alive


def marked_groups(sentinel_pid: int, proc: Path = Path("/proc")) -> set[int]:
    """The process groups of the processes whose environment carries this sentinel's mark
    (none where there is no ``/proc``)."""
    mark = f"{MARK}={sentinel_pid}".encode()
    groups = set()
    with contextlib.suppress(OSError):
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if mark in (entry / "environ").read_bytes().split(b"\0"):
                    groups.add(os.getpgid(int(entry.name)))
    groups.discard(os.getpgid(0))
    return groups


def serve(grace: float) -> int:
    die_with_parent()
    orphaned = False

    def on_term(*_: object) -> None:
        nonlocal orphaned
        orphaned = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the launcher
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    groups: set[int] = set()
    buffer = b""
    while True:
        closed = False
        while True:
            try:
                chunk = os.read(stdin, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                closed = True
                break
            buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line[:1] == b"+":
                groups.add(int(line[1:]))
            elif line[:1] == b"-":
                groups.discard(int(line[1:]))
        if closed or orphaned:
            break
        time.sleep(_READ_EVERY_S)
    groups = _signal_groups(groups | marked_groups(os.getpid()), signal.SIGTERM)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        time.sleep(0.1)
        groups = _signal_groups(groups, 0)
    _signal_groups(groups, signal.SIGKILL)
    return 0


class Sentinel:
    """The launcher's side. Example::

    sentinel = await Sentinel.start(grace=5)
    sentinel.watch(pgid)      # a job's group started
    sentinel.release(pgid)    # ... and ended
    await sentinel.close()
    """

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    async def start(cls, *, grace: float) -> Sentinel:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "balsam_mq.launcher.sentinel",
            str(grace),
            stdin=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        return cls(process)

    @property
    def pid(self) -> int:
        return self._process.pid

    def watch(self, pgid: int) -> None:
        self._write(b"+%d\n" % pgid)

    def release(self, pgid: int) -> None:
        self._write(b"-%d\n" % pgid)

    def _write(self, line: bytes) -> None:
        stdin = self._process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(line)  # into the pipe at once; buffered only if it is full

    async def close(self, timeout: float = 30.0) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()


if __name__ == "__main__":
    sys.exit(serve(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0))

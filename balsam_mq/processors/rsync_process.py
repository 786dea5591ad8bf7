"""One rsync process: started in a process group of its own, the group killed on timeout or
cancellation, its stderr kept (the end of it) and read for what it says of each item."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import anyio

from balsam_mq.processors.batches import Item

STDERR_LIMIT = 64 * 1024  # bytes of rsync's stderr kept (the end matters)
MESSAGE_LINES = 4
DRAIN_GRACE_S = 5.0
PARTIAL = (23, 24)  # some files were not transferred / vanished: the rest arrived
EXIT_MEANINGS = {
    5: "could not start the rsync protocol",
    10: "socket I/O error",
    12: "rsync protocol stream error",
    14: "could not run the ssh command",
    20: "killed by a signal",
    23: "partial transfer",
    24: "some source files vanished",
    30: "I/O timeout",
    255: "ssh connection failed",
}
_QUOTED = re.compile(r'"([^"]*)"')


@dataclass(frozen=True)
class Run:
    """How the one rsync process ended."""

    started: bool
    returncode: int | None
    problem: str | None  # the batch's failure in one line; None when rsync exited 0
    stderr: list[str]

    @property
    def complete(self) -> bool:
        """Whatever is not named in an error arrived whole (exit 0, 23 or 24)."""
        return self.returncode == 0 or self.returncode in PARTIAL

    def about(self, item: Item, tree: Path) -> str | None:
        """rsync's error lines naming the item's path, one of its parents, or (recursive)
        a path below it."""
        lines = [line for line in self.stderr if _names(line, item, tree)]
        return "; ".join(lines[-MESSAGE_LINES:])[-500:] if lines else None


def _names(line: str, item: Item, tree: Path) -> bool:
    if not line.startswith("rsync:"):
        return False
    remote = item.remote
    for quoted in _QUOTED.findall(line):
        if quoted.startswith(f"{tree}/"):
            quoted = quoted[len(str(tree)) :]
        path = PurePosixPath("/", quoted)
        if path == PurePosixPath("/"):
            continue
        if (
            path == remote
            or path in remote.parents
            or (item.recursive and remote in path.parents)
            or (path.parent == remote.parent and path.name.startswith(f".{remote.name}."))
        ):
            return True
    return False


async def run_rsync(argv: list[str], timeout_s: float, label: str) -> Run:
    """Run rsync in its own process group; the group is killed on timeout or cancellation."""
    try:
        process = await anyio.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return Run(False, None, f"rsync could not be started: {exc}", [])
    err = bytearray()
    drained = anyio.Event()

    async def drain() -> None:
        assert process.stderr is not None
        async for chunk in process.stderr:
            err.extend(chunk)
            del err[:-STDERR_LIMIT]
        drained.set()

    timed_out = False
    async with process:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain)
                with anyio.move_on_after(timeout_s) as waiting:
                    await process.wait()
                if waiting.cancelled_caught:
                    timed_out = True
                    _kill_group(process.pid)
                    await process.wait()
                # stderr ends with rsync's group; something that left it must not hold us
                with anyio.move_on_after(DRAIN_GRACE_S):
                    await drained.wait()
                tg.cancel_scope.cancel()
        finally:
            if process.returncode is None:
                _kill_group(process.pid)
                with anyio.CancelScope(shield=True):
                    await process.wait()
    lines = _meaningful(err.decode(errors="replace"))
    tail = _tail(lines)
    code = process.returncode
    if code == 0 and not timed_out:
        return Run(True, code, None, lines)
    if timed_out:
        problem = f"rsync with {label} timed out after {timeout_s:g} s and was killed"
    else:
        meaning = EXIT_MEANINGS.get(code or 0)
        problem = f"rsync with {label} failed (exit {code}{', ' + meaning if meaning else ''})"
    return Run(True, code, f"{problem}: {tail}" if tail else problem, lines)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _meaningful(stderr: str) -> list[str]:
    lines = (line.strip() for line in stderr.splitlines())
    return [line for line in lines if line and not line.startswith("Warning: Permanently added")]


def _tail(lines: list[str]) -> str:
    """The last lines worth reading: ssh's own (connection, authentication) first, then
    rsync's, without its closing ``rsync error: ... (code N) at io.c(...)`` when others say
    more."""
    said = [line for line in lines if not line.startswith("rsync error:")] or lines
    ssh = [line for line in said if not line.startswith("rsync")][-2:]
    rest = [line for line in said if line.startswith("rsync")]
    kept = ssh + (rest[-(MESSAGE_LINES - len(ssh)) :] if len(ssh) < MESSAGE_LINES else [])
    return "; ".join(kept)[-500:]

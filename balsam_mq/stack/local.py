"""`balsam-mq up/down/status`: the local single-machine stack, a one-node MongoDB replica
set (a mongod we start and stop) and RabbitMQ (started only if nothing answers, stopped
only if we started it), with what `up` started kept in the stack dir."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pymongo import ReadPreference
from pymongo.errors import PyMongoError

from balsam_mq.errors import StackError
from balsam_mq.settings import Settings, redact_url
from balsam_mq.stack.common import LOCAL_HOSTS
from balsam_mq.stack.mongod import (
    await_ready,
    find_mongod,
    is_mongod,
    is_writable,
    mongo_client,
    mongo_url,
    start_mongod,
    stop_mongod,
)
from balsam_mq.stack.rabbitmq import (
    ensure_rabbitmq,
    rabbitmq_answers,
    rabbitmq_tool,
    run_tool,
    tcp_answers,
)

MONGO_PORT = 27017
_PROBE_TIMEOUT_S = 2.0


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
        return pid if is_mongod(pid) else None

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
            with mongo_client(mongo_url(port)) as client:
                deadline = time.monotonic() + 30.0
                await_ready(pid, paths.log, deadline, "become PRIMARY", lambda: is_writable(client))
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
            ctl = rabbitmq_tool("rabbitmqctl")
            if ctl is None:
                raise StackError("`up` started RabbitMQ but rabbitmqctl is gone: stop it by hand")
            run_tool([ctl, "stop"], timeout=120.0)
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
    if address is not None and not tcp_answers(address, timeout):
        return False, False  # fast path: the driver would wait out the whole timeout
    try:
        with mongo_client(url, timeout) as client:
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

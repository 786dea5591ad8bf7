"""A three-member MongoDB replica set on this machine (ports of its own), to kill its primary.

    python bench/replica_set.py start DIR   # prints the URL; members' data and logs in DIR
    python bench/replica_set.py stop DIR

``bench/faults.py`` uses it for its ``primary-kill`` scenario.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import free_port, services_main

from balsam_mq import stack

NAME = "rsfaults"
MEMBERS = 3


@dataclass
class ReplicaSet:
    root: Path
    ports: list[int]
    pids: list[int]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"mongodb://{hosts}/?replicaSet={NAME}"

    def member(self, i: int) -> None:
        """Start member ``i`` (again) on its data."""
        proc = stack.spawn_mongod(
            stack.find_mongod(),
            port=self.ports[i],
            replica_set=NAME,
            dbpath=self.root / f"m{i}" / "data",
            logpath=self.root / f"m{i}" / "mongod.log",
        )
        self.pids[i] = proc.pid

    def primary(self, timeout: float = 60.0) -> int:
        """The index of the member that is primary (waiting for an election)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, port in enumerate(self.ports):
                try:
                    with _client(port) as client:
                        if client.admin.command("hello").get("isWritablePrimary"):
                            return i
                except PyMongoError:
                    continue
            time.sleep(0.2)
        raise RuntimeError(f"no primary among {self.ports} within {timeout:g} s")

    def kill(self, i: int) -> None:
        stack.stop_mongod(self.pids[i], crash=True)

    def stop(self) -> None:
        for pid in self.pids:
            stack.stop_mongod(pid)
        (self.root / "members.json").unlink(missing_ok=True)


def _client(port: int) -> MongoClient[dict[str, object]]:
    return MongoClient(
        f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=1000
    )


def start(root: Path) -> ReplicaSet:
    """Three members, initiated; returns once one of them is primary."""
    rs = ReplicaSet(root, [free_port() for _ in range(MEMBERS)], [0] * MEMBERS)
    for i in range(MEMBERS):
        rs.member(i)
    config = {
        "_id": NAME,
        "members": [{"_id": i, "host": f"127.0.0.1:{p}"} for i, p in enumerate(rs.ports)],
        # elections within seconds of a primary's death
        "settings": {"electionTimeoutMillis": 2000, "heartbeatIntervalMillis": 500},
    }
    deadline = time.monotonic() + 60
    while True:
        try:
            with _client(rs.ports[0]) as client:
                client.admin.command("replSetInitiate", config)
            break
        except PyMongoError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    rs.primary()
    (root / "members.json").write_text(json.dumps({"ports": rs.ports, "pids": rs.pids}))
    return rs


def stop(root: Path) -> None:
    saved = json.loads((root / "members.json").read_text())
    ReplicaSet(root, saved["ports"], saved["pids"]).stop()


if __name__ == "__main__":
    services_main(__doc__, lambda root: start(root).url, stop)

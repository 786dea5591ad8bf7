"""Throwaway services for tests: a free port, a mongod of a test's own (to stop and restart)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from balsam_mq import stack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mongod(root: Path, port: int) -> int:
    """A one-member replica set on ``port`` with its data in ``root/data`` (kept across a
    restart); its pid once it is PRIMARY."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    mongod = stack.find_mongod(Path(p) if (p := os.environ.get("BALSAM_MONGOD")) else None)
    process = stack.start_mongod(
        mongod=mongod, dbpath=root / "data", port=port, logpath=root / "mongod.log"
    )
    return process.pid

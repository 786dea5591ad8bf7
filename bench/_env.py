"""Benchmark environment: a throwaway mongod (unless BALSAM_MONGODB_URL is set), RabbitMQ,
and a fresh database and namespace that are removed afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from balsam_mq import stack
from balsam_mq.settings import Settings, load_settings


@contextlib.contextmanager
def mongo_url() -> Iterator[str]:
    if os.environ.get("BALSAM_MONGODB_URL"):
        yield os.environ["BALSAM_MONGODB_URL"]
        return
    with tempfile.TemporaryDirectory(prefix="balsam-bench-") as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
        s.close()
        (Path(tmp) / "data").mkdir()
        proc = stack.start_mongod(
            mongod=stack.find_mongod(),
            dbpath=Path(tmp) / "data",
            port=port,
            logpath=Path(tmp) / "mongod.log",
        )
        try:
            yield stack.mongo_url(port)
        finally:
            stack.stop_mongod(proc.pid)


@contextlib.asynccontextmanager
async def bench_settings(url: str) -> AsyncIterator[Settings]:
    tag = uuid.uuid4().hex[:10]
    settings = load_settings(mongodb_url=url, db=f"bench_{tag}", namespace=f"bench{tag}")
    stack.ensure_rabbitmq(settings.amqp_url)
    yield settings


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

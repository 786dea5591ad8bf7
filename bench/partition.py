"""A network namespace whose only link to this machine's services can be cut and restored.

A process started with :meth:`Partition.prefix` (``ip netns exec NAME ...``) reaches the
services through a veth pair: ``host_ip:port`` on this side forwards to
``127.0.0.1:port``, where MongoDB and RabbitMQ listen (so RabbitMQ's guest user, allowed
from localhost only, still works). :meth:`cut` takes the namespace's end of the link
down: packets in flight are lost, connections hang, new ones fail, as when a compute
node's network goes; :meth:`restore` brings it back. Needs root (``ip netns``).

``bench/faults.py`` uses it for its ``partition`` scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

SUBNET = "10.213.7"  # a /30 for the pair: .1 this side, .2 in the namespace


@dataclass
class Partition:
    name: str
    host_if: str
    ns_if: str
    host_ip: str = f"{SUBNET}.1"
    ns_ip: str = f"{SUBNET}.2"
    servers: list[asyncio.Server] = field(default_factory=list)
    links: set[asyncio.Future[Any]] = field(default_factory=set)  # forwarded connections

    def prefix(self) -> list[str]:
        """Put before a command to run it inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    async def forward(self, port: int) -> None:
        """``host_ip:port`` → ``127.0.0.1:port``, for every connection from the namespace."""

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            link = asyncio.ensure_future(
                asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            )
            self.links.add(link)
            link.add_done_callback(self.links.discard)
            await asyncio.gather(link, return_exceptions=True)

        self.servers.append(await asyncio.start_server(handle, self.host_ip, port))

    def cut(self) -> None:
        _ip("netns", "exec", self.name, "ip", "link", "set", self.ns_if, "down")

    def restore(self) -> None:
        _ip("netns", "exec", self.name, "ip", "link", "set", self.ns_if, "up")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextlib.asynccontextmanager
async def partition(ports: Sequence[int]) -> AsyncIterator[Partition]:
    """A namespace linked to this machine, ``ports`` forwarded; removed afterwards."""
    tag = uuid.uuid4().hex[:6]
    p = Partition(f"bmq{tag}", f"bmqh{tag}", f"bmqn{tag}")
    _ip("netns", "add", p.name)
    try:
        _ip("link", "add", p.host_if, "type", "veth", "peer", "name", p.ns_if)
        _ip("link", "set", p.ns_if, "netns", p.name)
        _ip("addr", "add", f"{p.host_ip}/30", "dev", p.host_if)
        _ip("link", "set", p.host_if, "up")
        inside = ("netns", "exec", p.name, "ip")
        _ip(*inside, "addr", "add", f"{p.ns_ip}/30", "dev", p.ns_if)
        _ip(*inside, "link", "set", p.ns_if, "up")
        _ip(*inside, "link", "set", "lo", "up")
        for port in ports:
            await p.forward(port)
        yield p
    finally:
        for server in p.servers:
            server.close()
        for link in list(p.links):
            link.cancel()
        await asyncio.gather(*p.links, return_exceptions=True)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", p.host_if)
        _ip("netns", "del", p.name)

"""RabbitMQ nodes of our own on this machine: each with its ports, data, logs and Erlang
cookie in one directory, started, stopped and clustered with RabbitMQ's own tools.

For a cluster on one machine (``bench/rabbit_cluster.py``) and for tests that stop a
node; a production cluster is set up by its administrators. Nodes listen on 127.0.0.1
only and load no plugins (a second management listener would clash with the system
node's).

Example::

    nodes = [RabbitNode(root / f"n{i}", f"bmq{i}", 5681 + i, 25681 + i) for i in range(3)]
    for node in nodes:
        node.start()
    for node in nodes[1:]:
        node.join(nodes[0])
    url = ",".join(node.url for node in nodes)
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from balsam_mq.errors import StackError

# RabbitMQ's own scripts: Debian's /usr/sbin wrappers switch to the rabbitmq user, whose
# home and cookie are the system node's; these run as we are, with our HOME and cookie
TOOLS = Path("/usr/lib/rabbitmq/bin")
COOKIE = "BALSAMMQLOCALNODES"  # the cookie every node made here shares (clustering needs one)


@dataclass(frozen=True)
class RabbitNode:
    root: Path  # data, logs, pid and cookie
    name: str  # the node's short name: "<name>@localhost"
    port: int  # AMQP port on 127.0.0.1
    dist_port: int  # Erlang distribution port (clustering, the CLI tools)

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.root),  # where the CLI tools and the node read the cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.root / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
        }

    def ctl(self, *args: str, timeout: float = 120.0) -> str:
        """``rabbitmqctl -n <node> ARGS``; its output, or StackError naming the command."""
        command = [str(TOOLS / "rabbitmqctl"), "-n", self.node, *args]
        try:
            done = subprocess.run(
                command, env=self._env(), capture_output=True, text=True, timeout=timeout
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StackError(f"`{' '.join(command)}` failed: {exc}") from exc
        if done.returncode != 0:
            raise StackError(
                f"`{' '.join(command)}` exited with {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )
        return done.stdout

    def start(self, timeout: float = 90.0) -> None:
        """Start the node (on its data, if it ran before) and wait until it serves AMQP."""
        if not (TOOLS / "rabbitmq-server").exists():
            raise StackError(f"RabbitMQ is not installed ({TOOLS / 'rabbitmq-server'} missing)")
        self.root.mkdir(parents=True, exist_ok=True)
        cookie = self.root / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(COOKIE)
            cookie.chmod(0o400)
        (self.root / "enabled_plugins").write_text("[].\n")
        subprocess.run(
            [str(TOOLS / "rabbitmq-server"), "-detached"],
            env=self._env(),
            cwd=self.root,  # where the VM writes a crash dump
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
            timeout=60,
        )
        deadline = time.monotonic() + timeout
        while not self.answers():
            if time.monotonic() > deadline:
                raise StackError(
                    f"RabbitMQ node {self.node} did not answer on port {self.port} within "
                    f"{timeout:g} s; see {self.root / 'log'}"
                )
            time.sleep(0.25)
        self.ctl("await_startup", "--timeout", str(int(timeout)))

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the whole node (the Erlang VM too); nothing if it is not running."""
        try:
            self.ctl("stop", timeout=60)
        except StackError:
            if self.answers():
                raise

    def join(self, seed: RabbitNode) -> None:
        """Make this (freshly started) node a member of ``seed``'s cluster."""
        self.ctl("stop_app")
        self.ctl("join_cluster", seed.node)
        self.ctl("start_app")

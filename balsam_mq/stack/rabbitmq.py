"""RabbitMQ for the local stack: answering, or started (a local single-node broker) when
nothing answers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from balsam_mq.errors import StackError
from balsam_mq.settings import redact_url, split_urls
from balsam_mq.stack.common import LOCAL_HOSTS, POLL_S, is_executable

AMQP_PORT = 5672
AMQPS_PORT = 5671
_RABBITMQ_HINT = (
    "install and start it with `apt-get install -y rabbitmq-server && rabbitmq-server -detached` "
    "(or `bash scripts/ensure-rabbitmq.sh`), or point BALSAM_AMQP_URL at a running broker"
)


def rabbitmq_answers(amqp_url: str, timeout: float = 2.0) -> bool:
    """A TCP connection to the broker of `amqp_url` (to one of its nodes) succeeds."""
    return any(tcp_answers(_amqp_address(url), timeout) for url in split_urls(amqp_url))


def tcp_answers(address: tuple[str, int], timeout: float) -> bool:
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
    server = rabbitmq_tool("rabbitmq-server")
    if server is None:
        raise StackError(
            f"RabbitMQ does not answer at {host}:{port} and is not installed: " + _RABBITMQ_HINT
        )
    # listening on this machine only: its AMQP port and the Erlang port mapper
    local = {"RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "ERL_EPMD_ADDRESS": "127.0.0.1"}
    run_tool([server, "-detached"], timeout=60.0, env={**os.environ, **local})
    deadline = time.monotonic() + timeout
    while not rabbitmq_answers(amqp_url, timeout=POLL_S * 5):
        if time.monotonic() >= deadline:
            raise StackError(
                f"started `{server} -detached` but RabbitMQ did not answer at {host}:{port} "
                f"within {timeout:g} s; see /var/log/rabbitmq/"
            )
        time.sleep(POLL_S)
    ctl = rabbitmq_tool("rabbitmqctl")
    if ctl is not None:
        remaining = max(1, int(deadline - time.monotonic()))
        run_tool([ctl, "await_startup", "--timeout", str(remaining)], timeout=remaining + 10.0)
    return True


def _amqp_address(amqp_url: str) -> tuple[str, int]:
    parts = urlsplit(amqp_url)
    try:
        port = parts.port
    except ValueError as exc:
        raise StackError(f"BALSAM_AMQP_URL={redact_url(amqp_url)}: {exc}") from None
    default = AMQPS_PORT if parts.scheme == "amqps" else AMQP_PORT
    return parts.hostname or "127.0.0.1", port or default


def rabbitmq_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    sbin = Path("/usr/sbin") / name
    return str(sbin) if is_executable(sbin) else None


def run_tool(args: list[str], timeout: float, env: dict[str, str] | None = None) -> None:
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

"""Stopping and starting the local RabbitMQ node's app (``rabbitmqctl``) under a test."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

CTL = shutil.which("rabbitmqctl")
# the node rabbitmqctl stops and starts must be the broker the tests use
OWN_NODE = CTL is not None and not os.environ.get("BALSAM_AMQP_URL")

needs_own_node = pytest.mark.skipif(
    not OWN_NODE, reason="needs rabbitmqctl and the local node as the broker"
)


def ctl(*args: str) -> None:
    assert CTL is not None
    subprocess.run([CTL, *args], check=True, capture_output=True, timeout=120)


def start_after(seconds: float) -> None:
    """Start the node's app after ``seconds`` (run it in a thread)."""
    time.sleep(seconds)
    ctl("start_app")


@pytest.fixture
def broker_restored() -> Iterator[None]:
    """Whatever happens in the test, the node's app runs again after it."""
    yield
    if OWN_NODE:
        ctl("start_app")

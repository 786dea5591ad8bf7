"""CLI fixtures: the test's services in the environment, a site with two apps made through the
SDK, a running relay, and ``cli`` to invoke `balsam-mq` in a worker thread."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import Cli, World, make_world

from balsam_mq.sdk import Client
from balsam_mq.settings import Settings


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The test's MongoDB database and RabbitMQ namespace, for `load_settings()`."""
    values = {
        "BALSAM_MONGODB_URL": settings.mongodb_url,
        "BALSAM_AMQP_URL": settings.amqp_url,
        "BALSAM_DB": settings.db,
        "BALSAM_NAMESPACE": settings.namespace,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    for key in ("TTY_COMPATIBLE", "FORCE_COLOR", "BALSAM_SITE"):
        monkeypatch.delenv(key, raising=False)
    return values


@pytest.fixture
def cli(env: dict[str, str]) -> Cli:
    return Cli()


@pytest.fixture
async def world(client: Client, tmp_path: Path) -> World:
    """Site "polaris" (its directory under tmp_path) with the apps Adder and Sim."""
    return await make_world(tmp_path)

"""`balsam-mq site sync` with a real background agent of the site: the agent is told to reload
its settings as `site reload` tells it (SIGHUP), and the output says so; with no agent, or a
malformed settings.yml, it says why nothing was reloaded. `site start | reload | stop --json`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Cli, World
from support.waiting import process_gone, until

from balsam_mq.site.directory import SiteDirectory

APPS_FILE = """
from balsam_mq import ApplicationDefinition

class Echo(ApplicationDefinition):
    site = "polaris"
    command_template = "echo {{ word }}"
"""


@pytest.fixture
async def site_dir(world: World) -> AsyncIterator[SiteDirectory]:
    """The directory of the world's site "polaris"; an agent a failed test left is killed."""
    assert world.site.id is not None
    site_dir = SiteDirectory.create(world.path, name="polaris", site_id=world.site.id)
    yield site_dir
    with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError, KeyError):
        os.kill(int(json.loads(site_dir.pid_file.read_text())["pid"]), signal.SIGKILL)


def reloads(site_dir: SiteDirectory) -> int:
    """How many SIGHUPs the agent's log says it received."""
    log = site_dir.agent_log
    return log.read_text().count("received SIGHUP: reloading") if log.exists() else 0


async def json_of(cli: Cli, *args: str) -> Any:
    return json.loads((await cli.ok(*args, "--json")).stdout)


async def test_sync_has_a_running_agent_reload_its_settings(
    cli: Cli, site_dir: SiteDirectory, tmp_path: Path
) -> None:
    apps = tmp_path / "my_apps.py"
    apps.write_text(APPS_FILE)
    path, log = str(site_dir.path), site_dir.agent_log

    started = await json_of(cli, "site", "start", path)
    pid = started["pid"]
    assert (started["site"], started["log"], started["stale_pid_file_removed"]) == (
        "polaris",
        str(log),
        False,
    )
    assert json.loads(site_dir.pid_file.read_text())["pid"] == pid

    synced = await cli.ok("site", "sync", str(apps))
    assert synced.stdout.splitlines() == [
        "synced app 'Echo' (id 3, command template) to site 'polaris'",
        f"agent pid {pid} reloading settings (site 'polaris'); what it applied, and what "
        f"needs a restart, goes to {log}",
    ]
    await until(lambda: reloads(site_dir) == 1, 30)
    await until(lambda: "settings.yml reloaded: nothing changed" in log.read_text(), 30)

    document = await json_of(cli, "site", "sync", str(apps))
    assert [a["name"] for a in document["apps"]] == ["Echo"]
    (agent,) = document["agents"]
    assert (agent["site"], agent["reloaded"], agent["pid"]) == ("polaris", True, pid)
    assert agent["message"].startswith(f"agent pid {pid} reloading settings")
    await until(lambda: reloads(site_dir) == 2, 30)

    told = await json_of(cli, "site", "reload", path)  # the same signal, by the same code
    assert (told["site"], told["pid"], told["log"]) == ("polaris", pid, str(log))
    await until(lambda: reloads(site_dir) == 3, 30)

    # a malformed settings.yml: the apps are synced, the agent is not disturbed, and the
    # command fails saying why
    good = site_dir.settings_file.read_text()
    site_dir.settings_file.write_text(good + "hooks:\n  batch_size: -1\n")
    refused = await cli("site", "sync", str(apps))
    assert refused.exit_code == 1
    assert refused.stdout.startswith("synced app 'Echo' (id 3, command template)")
    assert refused.stderr.startswith(
        f"error: site 'polaris': settings not reloaded: {site_dir.settings_file}: "
        "hooks.batch_size: Input should be greater than or equal to 1"
    )
    site_dir.settings_file.write_text(good)

    stopped = await json_of(cli, "site", "stop", path)
    assert stopped["site"] == "polaris" and stopped["stopped"] is True
    assert stopped["pid"] == pid and stopped["stale_pid_file_removed"] is False
    assert process_gone(pid)
    assert reloads(site_dir) == 3

    alone = await cli.ok("site", "sync", str(apps))
    assert alone.stdout.splitlines()[-1] == (
        "no agent of site 'polaris' runs: nothing reloaded "
        "(an agent reads its settings when it starts)"
    )
    (none,) = (await json_of(cli, "site", "sync", str(apps)))["agents"]
    assert (none["reloaded"], none["pid"]) == (False, None)
    again = await json_of(cli, "site", "stop", path)
    assert (again["stopped"], again["pid"]) == (False, None)

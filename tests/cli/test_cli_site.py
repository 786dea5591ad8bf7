"""`balsam-mq site sync` and `site rm` against the real stack."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import ChannelNotFoundEntity
from cli_helpers import Cli, World, adders

from balsam_mq.broker import Topology, declare_core, declare_site
from balsam_mq.domain import BatchJobState
from balsam_mq.sdk import App, BatchJob, Client, EventLog, Job, Site

APPS_FILE = '''
from balsam_mq import ApplicationDefinition

HELPER = 10

class Scaler(ApplicationDefinition):
    """Multiplies by ten."""
    site = "polaris"

    def run(self, x):
        return x * HELPER

class Echo(ApplicationDefinition):
    site = "polaris"
    command_template = "echo {{ word }}"

if __name__ == "__main__":
    raise SystemExit("not run on import")
'''


async def test_sync_a_file_prints_what_it_synced(cli: Cli, world: World, tmp_path: Path) -> None:
    path = tmp_path / "my_apps.py"
    path.write_text(APPS_FILE)
    result = await cli.ok("site", "sync", str(path))
    assert result.stdout.splitlines() == [
        "synced app 'Scaler' (id 3, run()) to site 'polaris'",
        "synced app 'Echo' (id 4, command template) to site 'polaris'",
        f"site 'polaris': no site directory at {world.path} on this machine: nothing reloaded",
    ]
    document = await cli.json("site", "sync", str(path))  # a re-sync keeps the ids
    synced = document["apps"]
    assert [(a["id"], a["name"], a["site"]) for a in synced] == [
        (3, "Scaler", "polaris"),
        (4, "Echo", "polaris"),
    ]
    assert "serialized_class" not in synced[0]
    assert synced[0]["description"] == "Multiplies by ten."
    assert synced[1]["parameters"] == {"word": {"required": True, "default": None, "help": ""}}
    assert [(a["site"], a["reloaded"], a["pid"]) for a in document["agents"]] == [
        ("polaris", False, None)
    ]
    # by value: the stored class loads and runs without the file being importable
    loaded = await App.objects.get(name="Scaler")
    from balsam_mq.domain.serialization import deserialize_app

    cls = deserialize_app(loaded.serialized_class, what="Scaler")
    assert cls.__name__ == "Scaler" and cls(None).run(4) == 40  # type: ignore[attr-defined, arg-type]


async def test_sync_a_module_by_name(
    cli: Cli, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "cli_sync_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "apps.py").write_text(APPS_FILE.replace("Scaler", "Doubler"))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        result = await cli.ok("site", "sync", "cli_sync_pkg.apps")
    finally:
        for name in ("cli_sync_pkg", "cli_sync_pkg.apps"):
            sys.modules.pop(name, None)
    assert "synced app 'Doubler'" in result.stdout


BAD_FILES = [
    ("X = 1\n", "defines no ApplicationDefinition subclass"),
    ("raise RuntimeError('boom')\n", "importing it failed: RuntimeError: boom"),
    ("def broken(:\n", "importing it failed: SyntaxError"),
    (
        "from balsam_mq import ApplicationDefinition\n"
        "class Good(ApplicationDefinition):\n    site = 'polaris'\n    command_template = 'x'\n"
        "class Lost(ApplicationDefinition):\n    site = 'nowhere'\n    command_template = 'x'\n",
        "site 'nowhere' does not exist",
    ),
]


async def test_sync_refuses_a_bad_file_and_syncs_nothing(
    cli: Cli, world: World, tmp_path: Path
) -> None:
    for i, (content, message) in enumerate(BAD_FILES):
        path = tmp_path / f"bad_apps_{i}.py"
        path.write_text(content)
        assert message in await cli.error("site", "sync", str(path))
    assert await App.objects.count() == 2  # the world's apps only


async def test_sync_of_a_missing_file_or_module(cli: Cli, world: World) -> None:
    assert "app file 'nope.py' does not exist" in await cli.error("site", "sync", "nope.py")
    assert "cannot import 'no_such_module_xyz'" in await cli.error(
        "site", "sync", "no_such_module_xyz"
    )


async def test_rm_refuses_a_site_with_jobs_unless_forced(
    cli: Cli,
    world: World,
    client: Client,
    amqp: AbstractRobustConnection,
    topology: Topology,
) -> None:
    await adders(3)
    await BatchJob.objects.create(site_id=world.site.id, num_nodes=1, wall_time_min=10)
    assert await cli.error("site", "rm", "polaris", "--yes") == (
        "error: Site 'polaris' (id 1) still has 3 jobs and 1 active batch job; "
        "remove it with force=True (CLI: --force) to delete them too"
    )
    declined = await cli("site", "rm", "polaris", "--force", input="n\n")
    assert declined.exit_code == 1
    assert "Remove site 'polaris' (id 1) with 2 apps, 1 batch job, 3 jobs?" in declined.stderr
    assert "error: not confirmed: nothing was changed" in declined.stderr
    assert await Job.objects.count() == 3

    channel = await amqp.channel()
    await declare_core(channel, topology)
    await declare_site(channel, topology, world.site.id or 0)
    result = await cli.ok("site", "rm", "polaris", "--force", input="y\n")
    assert "removed site 'polaris' (id 1) with 2 apps, 1 batch job, 3 jobs" in result.stdout
    assert f"its directory {world.path} is left on disk" in result.stdout
    assert "warning: batch job 1 (pending_submission, scheduler id -)" in result.stderr
    assert await Site.objects.count() == 0
    assert await Job.objects.count() == 0
    assert await App.objects.count() == 0
    assert await BatchJob.objects.count() == 0
    assert await EventLog.objects.filter(kind="job").count() == 9  # the log is kept
    await channel.close()
    fresh = await amqp.channel()  # a channel remembers what it declared: ask on a new one
    with pytest.raises(ChannelNotFoundEntity):  # the site's work queues are gone
        await fresh.declare_queue(topology.site(1).runnable.name, passive=True)


async def test_rm_an_empty_site_and_an_unknown_one(cli: Cli, world: World) -> None:
    await BatchJob.objects.filter(site_id=world.site.id).update(state=BatchJobState.FINISHED)
    removed = await cli.json("site", "rm", "1", "--yes")  # by id
    assert removed["site"]["name"] == "polaris" and removed["apps"] == 2 and removed["jobs"] == 0
    assert await cli.error("site", "rm", "polaris", "--yes") == (
        "error: site 'polaris' does not exist"
    )

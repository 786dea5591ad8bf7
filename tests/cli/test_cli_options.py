"""Options with one meaning in every command: `--site all` (every site) wherever a site is
read, and `--limit 0` (no limit) wherever a listing is limited."""

from __future__ import annotations

import json

import pytest
from cli_helpers import Adder, Cli, World, adders

from balsam_mq.sdk import BatchJob, Site

# commands that read by site; "--site" is optional in all but `queue ls`
READS_BY_SITE = [
    ("app", "ls"),
    ("job", "ls"),
    ("events",),
    ("dead", "ls"),
    ("queue", "ls"),
    ("report", "throughput"),
    ("report", "utilization"),
    ("report", "nodes"),
]
TAKES_LIMIT = [("job", "ls"), ("events",), ("dead", "ls")]


@pytest.fixture
async def two_sites(world: World) -> World:
    """Polaris (with jobs and a batch job) and theta (with a batch job)."""
    theta = await Site.objects.create(name="theta", path=str(world.path.parent / "theta"))
    assert world.site.id is not None and theta.id is not None
    await adders(3)
    await BatchJob.objects.create(site_id=world.site.id, num_nodes=2)
    await BatchJob.objects.create(site_id=theta.id, num_nodes=1)
    return world


@pytest.mark.parametrize("command", READS_BY_SITE, ids=" ".join)
async def test_site_all_means_every_site(
    cli: Cli, two_sites: World, command: tuple[str, ...]
) -> None:
    everything = await cli.ok(*command, "--site", "all")
    if command == ("queue", "ls"):  # the site is required: all is both sites' batch jobs
        batch_jobs = json.loads((await cli.ok(*command, "--site", "all", "--json")).stdout)
        assert sorted(b["num_nodes"] for b in batch_jobs) == [1, 2]
        return
    assert everything.stdout == (await cli.ok(*command)).stdout


async def test_site_all_lists_jobs_of_every_site(cli: Cli, two_sites: World) -> None:
    class Other(Adder):
        site = "theta"

    await Other.submit("theta/0", x=1)
    names = {j["site"] for j in await cli.json("job", "ls", "--site", "all")}
    assert names == {"polaris", "theta"}


@pytest.mark.parametrize("command", TAKES_LIMIT, ids=" ".join)
async def test_limit_0_means_no_limit(cli: Cli, world: World, command: tuple[str, ...]) -> None:
    await adders(60)  # more events than the default limit of `events` (50)
    unlimited = await cli.ok(*command, "--limit", "0")
    lines = unlimited.stdout.splitlines()
    if command == ("dead", "ls"):  # nothing parked: the same as no --limit
        assert unlimited.stdout == (await cli.ok(*command)).stdout
        return
    assert len(lines) > 50
    assert len((await cli.ok(*command, "--limit", "1")).stdout.splitlines()) == 1

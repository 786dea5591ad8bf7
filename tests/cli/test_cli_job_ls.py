"""`balsam-mq job ls`: filters, ordering, limits, JSON, and --watch driven by job events."""

from __future__ import annotations

import json

import pytest
from cli_helpers import Cli, Running, Sim, World, adders, drive

from balsam_mq.cli import job_views
from balsam_mq.domain import JobState
from balsam_mq.relay import Relay
from balsam_mq.sdk import ApplicationDefinition, Job, Site
from balsam_mq.store import Store

S = JobState
STATES = ", ".join(s.value for s in JobState)


async def ids(cli: Cli, *args: str) -> list[int]:
    return [job["id"] for job in await cli.json("job", "ls", *args)]


async def test_filters_order_and_limit(cli: Cli, world: World, store: Store) -> None:
    await adders(4, tags={"run": "H2O"})  # 1-4
    await adders(2, tags={"run": "CO2", "size": "big"})  # 5-6
    await Job.objects.bulk_create([Sim.submit("sim/x", input_filename="a", save=False)])  # 7
    await Site.objects.create(name="theta")

    class Far(ApplicationDefinition):
        site = "theta"
        command_template = "far"

    await Job.objects.bulk_create([Far.submit("far/add", save=False)])  # 8
    await drive(store, [1, 2], S.FAILED)
    await drive(store, [3], S.RUNNING)

    assert await ids(cli) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert await ids(cli, "--state", "FAILED") == [1, 2]
    assert await ids(cli, "--state", "FAILED", "--state", "RUNNING") == [1, 2, 3]
    assert await ids(cli, "--tag", "run=CO2", "--tag", "size=big") == [5, 6]
    assert await ids(cli, "--tag", "run=H2O", "--state", "PREPROCESSED") == [4]
    assert await ids(cli, "--app", "Sim") == [7]
    assert await ids(cli, "--app", "Adder", "--site", "polaris", "--id", "2", "--id", "6") == [2, 6]
    assert await ids(cli, "--site", "theta") == [8]
    assert await ids(cli, "--site", "all", "--workdir", "add") == [1, 2, 3, 4, 5, 6, 8]
    assert await ids(cli, "--order-by", "-id", "--limit", "3") == [8, 7, 6]
    assert await ids(cli, "--order-by", "state", "--limit", "0") == [1, 2, 4, 5, 6, 7, 8, 3]

    limited = await cli.ok("job", "ls", "--limit", "2")
    assert len(limited.stdout.splitlines()) == 2
    assert limited.stderr == "showing 2 of 8 jobs (--limit 0 shows all)\n"

    (job,) = await cli.json("job", "ls", "--id", "5")
    assert job["tags"] == {"run": "CO2", "size": "big"}
    assert (job["site"], job["app"], job["parameters"], job["state"]) == (
        "polaris",
        "Adder",
        {"x": 0},
        "PREPROCESSED",
    )


async def test_a_listing_reads_only_what_it_shows(
    cli: Cli, world: World, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = await adders(5)
    await drive(store, [jobs[0].id or 0], S.JOB_FINISHED, result=5)
    await store.db.command("profile", 2)  # record every operation on this test's database
    try:
        table = await cli.ok("job", "ls", "--limit", "2")
    finally:
        await store.db.command("profile", 0)
    assert [line.split("\t")[:5] for line in table.stdout.splitlines()] == [
        ["1", "polaris", "Adder", "add/0", "JOB_FINISHED"],
        ["2", "polaris", "Adder", "add/1", "PREPROCESSED"],
    ]
    reads = [d["command"] async for d in store.db["system.profile"].find({"op": "query"})]
    projections = {
        c["find"]: set(c["projection"]) for c in reads if c["find"] in ("jobs", "sites", "apps")
    }
    # no parameters, results or tracebacks; no app's class, only its name
    assert projections == {
        "jobs": {"_id", "site_id", "app_id", "workdir", "state", "tags", "last_update"},
        "sites": {"_id", "name"},
        "apps": {"_id", "name"},
    }
    # the jobs not shown are counted up to a bound
    monkeypatch.setattr(job_views, "COUNT_CAP", 4)
    limited = await cli.ok("job", "ls", "--limit", "2")
    assert limited.stderr == "showing 2 of more than 4 jobs (--limit 0 shows all)\n"
    limited = await cli.ok("job", "ls", "--limit", "2", "--state", "PREPROCESSED")
    assert limited.stderr == "showing 2 of 4 jobs (--limit 0 shows all)\n"


async def test_errors_name_the_problem(cli: Cli, world: World) -> None:
    # a filter the query refuses is a usage error (exit 2), a site that does not exist a
    # failure (exit 1)
    assert await cli.error("job", "ls", "--state", "DONE", code=2) == (
        f"error: jobs filter 'state': unknown job state 'DONE'; expected one of: {STATES}"
    )
    assert await cli.error("job", "ls", "--site", "nowhere") == (
        "error: site 'nowhere' does not exist"
    )
    assert await cli.error("job", "ls", "--app", "Nope") == "error: no app 'Nope'"
    await Site.objects.create(name="theta")
    assert await cli.error("job", "ls", "--app", "Sim", "--site", "theta") == (
        "error: no app 'Sim' at site 'theta'"
    )
    assert (await cli.error("job", "ls", "--order-by", "tags", code=2)).startswith(
        "error: jobs cannot be ordered by 'tags'; fields: app_id, batch_job_id, created_at, id,"
    )
    assert "must look like key=value" in await cli.error("job", "ls", "--tag", "run", code=2)


async def test_watch_relists_on_job_events(
    cli: Cli, world: World, store: Store, relay: Relay
) -> None:
    await adders(2)
    args = ["job", "ls", "--watch", "--json", "--site", "polaris", "--state", "PREPROCESSED"]
    async with Running.start(*args, "--state", "FAILED", "--watch-seconds", "60") as watch:
        first = json.loads(await watch.line())  # printed once its subscription is bound
        assert [(j["id"], j["state"]) for j in first] == [(1, "PREPROCESSED"), (2, "PREPROCESSED")]

        await Job.objects.filter(id=1).update(state="FAILED")
        lines = await watch.until(lambda line: '"FAILED"' in line)
        assert [(j["id"], j["state"]) for j in json.loads(lines[-1])] == [
            (1, "FAILED"),
            (2, "PREPROCESSED"),
        ]

        await drive(store, [2], S.RUNNING)  # leaves the selection
        lines = await watch.until(lambda line: len(json.loads(line)) == 1)
        assert [j["id"] for j in json.loads(lines[-1])] == [1]
        code, err = await watch.interrupt()
    assert code == 0, err


async def test_watch_prints_plain_listings_off_a_terminal(
    cli: Cli, world: World, relay: Relay
) -> None:
    await adders(1)
    async with Running.start("job", "ls", "-w", "--id", "1", "--watch-seconds", "60") as watch:
        first = await watch.until(lambda line: line == "")
        assert [line.split("\t")[:5] for line in first[:-1]] == [
            ["1", "polaris", "Adder", "add/0", "PREPROCESSED"]
        ]
        await Job.objects.filter(id=1).update(**{"tags.seen": "yes"})
        await Job.objects.filter(id=1).update(state="FAILED")
        second = await watch.until(lambda line: "\tFAILED\t" in line)
        assert second[-1].split("\t")[4:6] == ["FAILED", "seen=yes"]
        code, _ = await watch.interrupt()
    assert code == 0

"""`balsam-mq events`: the stored event log, filtered, as text and JSON, and followed live."""

from __future__ import annotations

import json

from cli_helpers import Cli, Running, World, adders, drive

from balsam_mq.domain import JobState
from balsam_mq.relay import Relay
from balsam_mq.sdk import ApplicationDefinition, Job, Site
from balsam_mq.store import Store

S = JobState


async def test_latest_events_oldest_first(cli: Cli, world: World, store: Store) -> None:
    await adders(2)  # created together: every step of both, in one transaction, job by job
    await drive(store, [1], S.RUNNING)
    everything = await cli.json("events")
    assert [(e["kind"], e.get("job_id"), e["to_state"]) for e in everything] == [
        ("app", None, "synced"),
        ("app", None, "synced"),
        ("job", 1, "READY"),
        ("job", 1, "STAGED_IN"),
        ("job", 1, "PREPROCESSED"),
        ("job", 2, "READY"),
        ("job", 2, "STAGED_IN"),
        ("job", 2, "PREPROCESSED"),
        ("job", 1, "RUNNING"),
    ]
    assert everything[-1]["site"] == "polaris" and everything[-1]["by"] == "launcher"

    lines = (await cli.ok("events", "--job", "1")).stdout.splitlines()
    assert [line.split("\t")[1:6] for line in lines] == [
        ["polaris", "job 1", "CREATED", "READY", "client"],
        ["polaris", "job 1", "READY", "STAGED_IN", "stage_in"],
        ["polaris", "job 1", "STAGED_IN", "PREPROCESSED", "preprocess"],
        ["polaris", "job 1", "PREPROCESSED", "RUNNING", "launcher"],
    ]
    latest = await cli.json("events", "--limit", "2")
    assert [(e["job_id"], e["to_state"]) for e in latest] == [(2, "PREPROCESSED"), (1, "RUNNING")]
    assert await cli.json("events", "--limit", "0") == everything  # 0: no limit

    await Site.objects.create(name="theta")

    class Far(ApplicationDefinition):
        site = "theta"
        command_template = "far"

    await Far.sync()
    assert [e["kind"] for e in await cli.json("events", "--site", "theta")] == ["app"]
    assert len(await cli.json("events", "-s", "polaris")) == 9
    assert await cli.error("events", "--site", "nowhere") == "error: site 'nowhere' does not exist"


async def test_follow_streams_new_events(cli: Cli, world: World, relay: Relay) -> None:
    await adders(2)
    async with Running.start("events", "-f", "--site", "polaris", "--limit", "2") as follow:
        history = [await follow.line(), await follow.line()]  # printed once subscribed
        assert [line.split("\t")[2:5] for line in history] == [
            ["job 2", "READY", "STAGED_IN"],
            ["job 2", "STAGED_IN", "PREPROCESSED"],
        ]
        await Job.objects.filter(id=2).update(state="FAILED", state_data={"why": "test"})
        line = await follow.line()
        assert line.split("\t")[1:7] == [
            "polaris",
            "job 2",
            "PREPROCESSED",
            "FAILED",
            "user",
            "{'why': 'test'}",
        ]
        code, err = await follow.interrupt()
    assert code == 0, err


async def test_follow_one_job_as_json_lines(cli: Cli, world: World, relay: Relay) -> None:
    await adders(2)
    args = ["events", "--follow", "--job", "1", "--limit", "1", "--json"]
    async with Running.start(*args, "--follow-seconds", "60") as follow:
        created = json.loads(await follow.line())  # history: printed once subscribed
        assert (created["job_id"], created["to_state"]) == (1, "PREPROCESSED")
        await Job.objects.filter(id=2).update(state="FAILED")  # another job: not shown
        await Job.objects.filter(id=1).update(state="FAILED")
        event = json.loads(await follow.line())
        assert (event["job_id"], event["from_state"], event["to_state"]) == (
            1,
            "PREPROCESSED",
            "FAILED",
        )
        code, _ = await follow.interrupt()
    assert code == 0

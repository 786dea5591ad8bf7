"""The CLI through a gateway: users and tokens made by an operator, `login` / `logout`, and a
user's day of job commands over HTTP, seeing only their own work."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cli_helpers import Cli, World, drive, make_world

from balsam_mq.domain import JobState, Session
from balsam_mq.sdk import Client, use_client
from balsam_mq.settings import Settings
from balsam_mq.store import Store

S = JobState


async def test_operator_makes_a_user_who_logs_in_and_out(
    cli: Cli, gateway: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "home" / "credentials.json"
    monkeypatch.setenv("BALSAM_CREDENTIALS", str(credentials))
    assert "created user 'dana'" in (await cli.ok("user", "create", "dana")).stdout
    assert (await cli("user", "create", "dana")).exit_code == 1  # taken
    assert "not allowed" in (await cli("user", "create", "no spaces")).stderr
    made = await cli.ok("user", "token", "dana", "--expires", "30d")
    token = made.stdout.strip()
    assert token.startswith("bmq_") and "valid until" in made.stderr
    assert (await cli("user", "token", "dana", "--expires", "soon")).exit_code == 2

    logged = await cli.ok("login", gateway + "/", "--token", token)
    assert "logged in to" in logged.stdout and "as dana" in logged.stdout
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert json.loads(credentials.read_text()) == {gateway: token}
    # the stored token is used for the gateway BALSAM_GATEWAY_URL names
    monkeypatch.setenv("BALSAM_GATEWAY_URL", gateway)
    listed = await cli("site", "ls")
    assert listed.exit_code == 0 and listed.stdout.strip() == ""  # dana has none yet
    assert "logged out of" in (await cli.ok("logout")).stdout
    assert not credentials.exists()
    refused = await cli("job", "ls")
    assert refused.exit_code == 1 and "balsam-mq login" in refused.stderr

    bad = await cli("login", gateway, "--token", token[:-2] + "zz")
    assert bad.exit_code == 1 and "token is not known" in bad.stderr
    assert "revoked 1 token" in (await cli.ok("user", "revoke", "dana")).stdout
    assert "dana\t0 live token(s)" in (await cli.ok("user", "ls")).stdout


async def test_a_users_job_commands_through_the_gateway(
    cli: Cli,
    settings: Settings,
    store: Store,
    gateway: str,
    http_client: Client,
    token: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with use_client(http_client):
        world: World = await make_world(tmp_path)  # alice's site "polaris" with Adder and Sim
    await store.users.create("eve")
    eve = (await store.users.issue_token("eve")).text
    monkeypatch.setenv("BALSAM_GATEWAY_URL", gateway)
    monkeypatch.setenv("BALSAM_TOKEN", token)
    # nothing below reaches MongoDB or RabbitMQ but through the gateway
    monkeypatch.setenv("BALSAM_MONGODB_URL", "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=1")
    monkeypatch.setenv("BALSAM_AMQP_URL", "amqp://nobody:x@127.0.0.1:9/")

    created = await cli.json(
        "job", "create", "--app", "Adder", "--workdir", "add/1", "-p", "x=5", "--tag", "run=A"
    )
    assert created["state"] == "PREPROCESSED" and created["site"] == "polaris"
    for i in (2, 3):
        await cli.ok("job", "create", "-a", "Adder", "--workdir", f"add/{i}", "-p", f"x={i}")
    listed = await cli.json("job", "ls", "--json")
    assert [j["id"] for j in listed] == [1, 2, 3]
    await cli.ok("job", "modify", "1", "--tag", "run=B")
    assert (await cli.json("job", "ls", "--json", "--tag", "run=B"))[0]["id"] == 1
    await drive(store, [1], S.JOB_FINISHED, result=6)
    assert world.site.id is not None  # the launcher session it ran in, read over HTTP too
    ran = await store.sessions.create(Session(site_id=world.site.id, hostname="nid07", pid=99))
    await store.db["jobs"].update_one({"_id": 1}, {"$set": {"session_id": ran.id}})
    shown = await cli.ok("job", "show", "1")
    assert "JOB_FINISHED" in shown.stdout and "6" in shown.stdout
    assert "run host: nid07 (launcher pid 99)" in shown.stdout
    assert "polaris" in (await cli.ok("site", "ls")).stdout
    assert "Adder" in (await cli.ok("app", "ls")).stdout
    events = await cli.ok("events", "--job", "1")
    assert "JOB_FINISHED" in events.stdout
    await cli.ok("job", "rm", "3", "--yes")
    assert [j["id"] for j in await cli.json("job", "ls", "--json")] == [1, 2]

    monkeypatch.setenv("BALSAM_TOKEN", eve)  # another user sees none of it
    assert await cli.json("job", "ls", "--json") == []
    missing = await cli("job", "show", "1")
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    assert world.site.name == "polaris"

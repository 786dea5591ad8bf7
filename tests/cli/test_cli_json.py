"""`--json` on every command that prints a result (found by walking the typer app, so a new
command without it fails here), and what it prints, against the real stack: one JSON document
on stdout that carries what the lines say; errors stay on stderr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Cli, World, adders, commands, drive

from balsam_mq.cli.common import JSON_HELP
from balsam_mq.domain import BatchJobState, JobState
from balsam_mq.sdk import BatchJob, Job, Site
from balsam_mq.store import Store

S = JobState
COMMANDS = dict(commands())
# the only commands without --json: processes that run in the foreground until stopped
# (their output is a log or a live display, not a result)
EXEMPT = {
    "site agent",  # the site agent itself (site start runs it in the background)
    "launcher",  # a pilot: it runs jobs until its wall time
    "gateway",  # the HTTP server
    "demo",  # the live tour
}


def test_the_exempt_commands_exist() -> None:
    assert set(COMMANDS) >= EXEMPT


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - EXEMPT))
def test_every_command_that_prints_a_result_takes_the_shared_json_option(name: str) -> None:
    options = {opt: param for param in COMMANDS[name].params for opt in getattr(param, "opts", [])}
    assert "--json" in options, f"balsam-mq {name} has no --json"
    assert options["--json"].help == JSON_HELP, f"balsam-mq {name}: not common.JsonOption"


async def json_of(cli: Cli, *args: str, input: str | None = None) -> Any:
    """The one JSON document a command prints on stdout (nothing else there)."""
    result = await cli.ok(*args, "--json", input=input)
    return json.loads(result.stdout)


async def test_job_rm_and_modify(cli: Cli, world: World) -> None:
    await adders(3, tags={"run": "H2O"})
    await adders(2, tags={"run": "CO2"})
    assert await json_of(cli, "job", "modify", "--with-tag", "run=H2O", "--tag", "retry=1") == {
        "updated": 3,
        "ids": [1, 2, 3],
    }
    assert await json_of(cli, "job", "modify", "5", "--state", "FAILED") == {
        "updated": 1,
        "ids": [5],
    }
    assert await json_of(cli, "job", "rm", "--tag-key", "retry", "-y") == {
        "deleted": 3,
        "ids": [1, 2, 3],
    }
    assert await json_of(cli, "job", "rm", "--state", "RUNNING", "-y") == {"deleted": 0, "ids": []}
    assert await json_of(cli, "job", "rm", "4", "5", "-y") == {"deleted": 2, "ids": [4, 5]}
    assert await Job.objects.count() == 0
    failed = await cli("job", "rm", "--site", "nowhere", "-y", "--json")  # errors: stderr only
    assert (failed.exit_code, failed.stdout) == (1, "")
    assert failed.stderr == "error: site 'nowhere' does not exist\n"


async def test_job_logs(cli: Cli, world: World) -> None:
    (job,) = await adders(1)
    workdir = world.path / "data" / "add/0"
    workdir.mkdir(parents=True)
    (workdir / "job.out").write_text("hello\n")
    shown = await json_of(cli, "job", "logs", str(job.id))
    assert shown["job_id"] == job.id and shown["workdir_path"] == str(workdir)
    assert shown["files"] == {
        "job.out": {"path": str(workdir / "job.out"), "text": "hello\n"},
        "balsam.log": {"path": str(workdir / "balsam.log"), "text": None},
    }
    assert "not with --follow" in await cli.error(
        "job", "logs", str(job.id), "--follow", "--json", code=2
    )


async def test_site_init(cli: Cli, world: World, tmp_path: Path) -> None:
    path = tmp_path / "sites" / "laptop"
    site = await json_of(cli, "site", "init", str(path), "--name", "laptop")
    assert (site["id"], site["name"], site["path"]) == (2, "laptop", str(path))
    assert (path / "settings.yml").is_file()
    assert (await Site.objects.get(name="laptop")).path == str(path)
    assert site in await json_of(cli, "site", "ls")  # as `site ls` lists it


async def test_users_and_tokens(cli: Cli, store: Store, env: dict[str, str]) -> None:
    assert await json_of(cli, "user", "ls") == []  # none yet: a listing, not an error
    made = await json_of(cli, "user", "create", "dana")
    assert (made["name"], made["tokens"]) == ("dana", [])
    issued = await json_of(cli, "user", "token", "dana", "--expires", "30d")
    assert issued["user"] == "dana" and issued["expires_at"] is not None
    assert issued["token"].startswith(f"bmq_{issued['id']}_")
    user, record = await store.users.authenticate(issued["token"])
    assert (user.name, record.id) == ("dana", issued["id"])
    second = await json_of(cli, "user", "token", "dana")
    listed = await json_of(cli, "user", "ls")
    assert [(u["name"], [t["id"] for t in u["tokens"]]) for u in listed] == [
        ("dana", [issued["id"], second["id"]])
    ]
    assert "hash" not in json.dumps(listed)  # never a token's hash, nor its text
    assert await json_of(cli, "user", "revoke", "dana", "--token", second["id"]) == {
        "user": "dana",
        "token": second["id"],
        "revoked": 1,
    }
    assert [t["id"] for t in (await json_of(cli, "user", "ls"))[0]["tokens"]] == [issued["id"]]


async def test_login_and_logout(
    cli: Cli, gateway: str, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BALSAM_CREDENTIALS", str(tmp_path / "credentials.json"))
    logged = await json_of(cli, "login", gateway, "--token", token)
    assert logged == {"url": gateway, "user": "alice", "expires_at": None}
    prompted = await json_of(cli, "login", gateway, input=token + "\n")  # the prompt: stderr
    assert prompted["user"] == "alice"
    assert await json_of(cli, "logout") == {"logged_out": [gateway]}


async def test_report_throughput_utilization_and_nodes(
    cli: Cli, world: World, store: Store
) -> None:
    ids = [j.id for j in await adders(3)]
    await drive(store, ids, S.JOB_FINISHED)
    report = await json_of(cli, "report", "throughput", "--site", "polaris")
    assert (report["series"], report["unit"]) == ("JOB_FINISHED", "jobs")
    rows = report["rows"]
    assert [list(r) for r in rows] == [["time", "JOB_FINISHED"]] * 3  # the rows of --csv
    assert [r["JOB_FINISHED"] for r in rows] == [1, 2, 3]
    summary = report["summary"]
    assert (summary["jobs"], summary["first"], summary["last"]) == (
        3,
        rows[0]["time"],
        rows[-1]["time"],
    )
    busy = await json_of(cli, "report", "utilization", "--no-node-weighting")
    assert busy["series"] == "running_jobs" and busy["rows"][-1]["running_jobs"] == 0
    assert busy["summary"]["peak"]["value"] >= 1 and busy["summary"]["last"] == 0
    none = await cli.ok("report", "nodes", "--json")  # nothing held: said on stderr
    assert json.loads(none.stdout) == {
        "series": "nodes",
        "unit": "nodes",
        "summary": None,
        "rows": [],
    }
    assert none.stderr == "no batch job has started\n"
    assert "not both" in await cli.error("report", "throughput", "--json", "--csv", "-", code=2)


async def test_queue_rm(cli: Cli, world: World) -> None:
    pending = await BatchJob.objects.create(site_id=world.site.id, num_nodes=1)
    queued = await BatchJob.objects.create(site_id=world.site.id, num_nodes=2)
    await BatchJob.objects.filter(id=queued.id).update(state=BatchJobState.QUEUED)
    assert await json_of(cli, "queue", "rm", str(pending.id)) == {
        "id": pending.id,
        "outcome": "withdrawn",
        "state": "finished",
    }
    assert await json_of(cli, "queue", "rm", str(queued.id)) == {
        "id": queued.id,
        "outcome": "deletion_requested",
        "state": "pending_deletion",
    }
    assert (await json_of(cli, "queue", "rm", str(queued.id)))["outcome"] == "already_requested"
    plain = await cli.ok("queue", "rm", str(queued.id))
    assert plain.stdout == f"BatchJob {queued.id}: deletion already requested\n"


async def test_up_and_down_say_what_they_did(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the test's services answering, `up` starts nothing and `down` stops nothing."""
    monkeypatch.setenv("BALSAM_STACK_DIR", str(tmp_path / "stack"))
    up = await json_of(cli, "up")
    assert up["ok"] is True and up["mongo"]["answering"] and up["rabbitmq"]["answering"]
    assert any("MongoDB already answers" in action for action in up["actions"])
    down = await json_of(cli, "down")
    assert "no mongod started by balsam-mq is running" in down["actions"]
    assert down["stack_dir"] == str(tmp_path / "stack")

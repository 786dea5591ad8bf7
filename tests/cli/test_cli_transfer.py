"""`balsam-mq transfer ls`: the transfer items of jobs, filtered, newest first."""

from __future__ import annotations

from datetime import timedelta

from cli_helpers import Cli, World

from balsam_mq.domain import TransferItem, TransferState, utcnow
from balsam_mq.store import Store


def item(
    world: World, job_id: int, slot: str, state: TransferState, **fields: object
) -> TransferItem:
    assert world.site.id is not None
    return TransferItem(
        job_id=job_id,
        site_id=world.site.id,
        slot=slot,
        direction="in",
        location="archive",
        protocol="rsync",
        remote_path=f"/data/{job_id}/{slot}",
        local_path=f"/site/data/j{job_id}/{slot}",
        state=state,
        **fields,  # type: ignore[arg-type]
    )


async def test_ls_shows_items_by_job_state_and_direction(
    cli: Cli, world: World, store: Store
) -> None:
    now = utcnow()
    await store.transfer_items.record(
        [
            item(world, 1, "deck", TransferState.DONE, bytes=1234, task_id="rsync-ab12"),
            item(world, 2, "deck", TransferState.ERROR, failures=2, error="ssh: refused"),
            item(world, 2, "mesh", TransferState.WAITING),
        ]
    )
    for k, (job_id, slot) in enumerate([(1, "deck"), (2, "deck"), (2, "mesh")]):
        await store.db["transfer_items"].update_one(
            {"job_id": job_id, "slot": slot}, {"$set": {"last_update": now + timedelta(seconds=k)}}
        )
    everything = await cli.json("transfer", "ls")
    assert [(i["job_id"], i["slot"]) for i in everything] == [(2, "mesh"), (2, "deck"), (1, "deck")]
    errors = await cli.json("transfer", "ls", "--state", "ERROR", "--state", "failed")
    assert [(i["job_id"], i["failures"], i["error"]) for i in errors] == [(2, 2, "ssh: refused")]
    assert [i["bytes"] for i in await cli.json("transfer", "ls", "--job", "1")] == [1234]
    assert await cli.json("transfer", "ls", "--direction", "out") == []
    table = (await cli.ok("transfer", "ls", "--job", "1")).stdout
    assert table.split("\t")[:7] == ["1", "in", "deck", "archive", "done", "1,234", "rsync-ab12"]
    message = await cli.error("transfer", "ls", "--state", "lost", code=2)
    assert "unknown state 'lost'; known: active, done, error, failed, pending, waiting" in message

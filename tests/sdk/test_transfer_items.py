"""TransferItem.objects: the site's record of its transfers, read through the SDK (directly
and through a gateway, where a caller sees only the items of its own sites); nobody
updates or deletes them but the site agent."""

from __future__ import annotations

import pytest

from balsam_mq import TransferItem
from balsam_mq.domain import TransferItem as TransferItemDocument, TransferState
from balsam_mq.errors import QueryError
from balsam_mq.sdk import Client, Site
from balsam_mq.store import Store


def item(site_id: int, job_id: int, state: TransferState) -> TransferItemDocument:
    return TransferItemDocument(
        job_id=job_id,
        site_id=site_id,
        slot="deck",
        direction="in",
        location="archive",
        protocol="rsync",
        remote_path=f"/data/{job_id}.nw",
        local_path=f"/site/data/{job_id}/deck.nw",
        state=state,
        task_id="rsync-0123456789ab",
        bytes=10 * job_id,
    )


async def test_items_are_listed_by_job_site_and_state_and_never_changed(
    client: Client, site: Site, store: Store, backend: str
) -> None:
    assert site.id is not None
    other = await store.sites.create(
        site.model_copy(update={"id": None, "name": "elsewhere", "owner": "someone"})
    )
    assert other.id is not None
    await store.transfer_items.record(
        [
            item(site.id, 1, TransferState.DONE),
            item(site.id, 2, TransferState.ERROR),
            item(other.id, 3, TransferState.DONE),  # not the caller's, through a gateway
        ]
    )
    # through a gateway, another owner's site's items do not exist for the caller
    assert await TransferItem.objects.all().count() == (2 if backend == "http" else 3)
    mine = TransferItem.objects.filter(site=site)
    assert sorted([i.job_id async for i in mine]) == [1, 2]
    done = await TransferItem.objects.get(site_id=site.id, state="done")
    assert (done.job_id, done.bytes, done.task_id) == (1, 10, "rsync-0123456789ab")
    assert await TransferItem.objects.filter(job_id=2, direction="in").count() == 1
    again = await TransferItem.objects.get(id=done.id)
    assert again.remote_path == "/data/1.nw"
    with pytest.raises(QueryError, match="cannot be updated"):
        await mine.update(state="done")
    with pytest.raises(QueryError, match="cannot be deleted"):
        await mine.delete()
    assert await TransferItem.objects.filter(site=site).count() == 2

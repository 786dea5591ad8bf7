"""Transfer items: one row per (job, direction, slot), written by every stage-in or
stage-out attempt, so users see what moved, in which batch, and why not."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from balsam_mq.domain import TransferItem
from balsam_mq.domain.models import plain
from balsam_mq.store.schema import TRANSFER_ITEMS

# what names an item: it is written in place by each attempt, never duplicated
ITEM_KEY = ("job_id", "direction", "slot")


class TransferItemRepository:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._items = db[TRANSFER_ITEMS]

    async def record(self, items: Sequence[TransferItem]) -> None:
        """Write each item over the row of its job, direction and slot (created the
        first time): one unordered bulk write."""
        if not items:
            return
        ops = []
        for item in items:
            doc = plain(item.model_dump(mode="python", exclude={"id"}))
            ops.append(UpdateOne({k: doc[k] for k in ITEM_KEY}, {"$set": doc}, upsert=True))
        await self._items.bulk_write(ops, ordered=False)

    async def of_jobs(
        self, job_ids: Iterable[int], direction: Literal["in", "out"]
    ) -> dict[tuple[int, str], TransferItem]:
        """The items of ``job_ids`` in ``direction``, by (job id, slot)."""
        cursor = self._items.find({"job_id": {"$in": list(job_ids)}, "direction": direction})
        return {(d["job_id"], d["slot"]): TransferItem.from_doc(d) async for d in cursor}

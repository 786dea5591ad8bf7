"""Collection names, indexes and the relay's origin point, created idempotently."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

SITES = "sites"
APPS = "apps"
JOBS = "jobs"
EVENTS = "events"
BATCH_JOBS = "batch_jobs"
SESSIONS = "sessions"
TRANSFER_ITEMS = "transfer_items"
USERS = "users"
COUNTERS = "counters"
RELAY_STATE = "relay_state"

_INDEX_NOT_FOUND = 27  # MongoDB's error code
ORIGIN = "__origin__"  # relay_state row: the change-stream point the database started at

INDEXES: dict[str, list[IndexModel]] = {
    SITES: [IndexModel([("owner", ASCENDING), ("name", ASCENDING)], unique=True)],
    APPS: [IndexModel([("site_id", ASCENDING), ("name", ASCENDING)], unique=True)],
    # listings filter by state, site, app or tags and page in id order (either way): the
    # filtered fields first, then _id, so a page reads only its own entries
    JOBS: [
        IndexModel([("state", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("site_id", ASCENDING), ("state", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("app_id", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("tags.$**", ASCENDING)]),
        IndexModel([("parent_ids", ASCENDING)]),
        IndexModel([("last_update", ASCENDING), ("_id", ASCENDING)]),
        # none on session_id: a claim and an outcome would each change its entries (a
        # quarter of the index work of a job's path); which jobs run in which launcher
        # sessions is read from the RUNNING jobs, through (state, _id)
    ],
    # the event log lists events in time order (either way), id after time: pages read
    # their own entries
    EVENTS: [
        IndexModel([("job_id", ASCENDING), ("seq", ASCENDING)]),
        IndexModel([("site_id", ASCENDING), ("timestamp", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("timestamp", ASCENDING), ("_id", ASCENDING)]),
    ],
    BATCH_JOBS: [IndexModel([("site_id", ASCENDING), ("state", ASCENDING)])],
    SESSIONS: [IndexModel([("site_id", ASCENDING), ("heartbeat", ASCENDING)])],
    # one row per job, direction and slot (what each attempt writes over); a site's by state
    TRANSFER_ITEMS: [
        IndexModel(
            [("job_id", ASCENDING), ("direction", ASCENDING), ("slot", ASCENDING)], unique=True
        ),
        IndexModel([("site_id", ASCENDING), ("state", ASCENDING), ("_id", ASCENDING)]),
    ],
    USERS: [
        IndexModel([("username", ASCENDING)], unique=True),
        IndexModel([("tokens.id", ASCENDING)]),  # a request's token finds its user
    ],
}

# indexes of earlier versions that those above replace: dropped where they exist
RETIRED: dict[str, list[str]] = {
    JOBS: ["site_id_1_state_1", "app_id_1", "last_update_-1", "session_id_1", "session_id_running"],
    TRANSFER_ITEMS: ["job_id_1"],
    EVENTS: ["site_id_1_timestamp_1", "timestamp_1"],
}

ALL_COLLECTIONS = [*INDEXES, COUNTERS, RELAY_STATE]


async def ensure_schema(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Create collections, indexes (dropping retired ones) and the relay origin point; safe to
    run any number of times.

    Collections must exist before a transaction writes to them, and the origin point
    must exist before the first event, so a relay started later still publishes
    every event ever written.
    """
    existing = set(await db.list_collection_names())

    async def create(name: str) -> None:
        if name not in existing:
            try:
                await db.create_collection(name)
            except Exception as exc:  # a concurrent creator won the race
                if "already exists" not in str(exc):
                    raise
        if name in INDEXES:
            await db[name].create_indexes(INDEXES[name])

    # each collection with its indexes, all at once: a new database is ready in a third
    # of the time it takes one after the other
    await asyncio.gather(*(create(name) for name in ALL_COLLECTIONS))
    for name, retired in RETIRED.items():
        present = set(await db[name].index_information()) & set(retired)
        for index in sorted(present):
            try:
                await db[name].drop_index(index)
            except OperationFailure as exc:  # a concurrent starter dropped it first
                if exc.code != _INDEX_NOT_FOUND:
                    raise
    state = db[RELAY_STATE]
    if await state.find_one({"_id": ORIGIN}) is None:
        pipeline = [{"$match": {"operationType": "insert"}}]
        async with await db[EVENTS].watch(pipeline, max_await_time_ms=1) as stream:
            await stream.try_next()
            token = stream.resume_token
        await state.update_one({"_id": ORIGIN}, {"$setOnInsert": {"token": token}}, upsert=True)

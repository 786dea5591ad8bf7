"""Collection names, indexes and the relay's origin point, created idempotently."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

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

ORIGIN = "__origin__"  # relay_state row: the change-stream point the database started at

INDEXES: dict[str, list[IndexModel]] = {
    SITES: [IndexModel([("owner", ASCENDING), ("name", ASCENDING)], unique=True)],
    APPS: [IndexModel([("site_id", ASCENDING), ("name", ASCENDING)], unique=True)],
    JOBS: [
        IndexModel([("site_id", ASCENDING), ("state", ASCENDING)]),
        IndexModel([("app_id", ASCENDING)]),
        IndexModel([("tags.$**", ASCENDING)]),
        IndexModel([("parent_ids", ASCENDING)]),
        IndexModel([("last_update", DESCENDING)]),
        IndexModel([("session_id", ASCENDING)], sparse=True),
    ],
    EVENTS: [
        IndexModel([("job_id", ASCENDING), ("seq", ASCENDING)]),
        IndexModel([("site_id", ASCENDING), ("timestamp", ASCENDING)]),
        IndexModel([("timestamp", ASCENDING)]),
    ],
    BATCH_JOBS: [IndexModel([("site_id", ASCENDING), ("state", ASCENDING)])],
    SESSIONS: [IndexModel([("site_id", ASCENDING), ("heartbeat", ASCENDING)])],
    TRANSFER_ITEMS: [IndexModel([("job_id", ASCENDING)])],
    USERS: [IndexModel([("username", ASCENDING)], unique=True)],
}

ALL_COLLECTIONS = [*INDEXES, COUNTERS, RELAY_STATE]


async def ensure_schema(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Create collections, indexes and the relay origin point; safe to run any number of times.

    Collections must exist before a transaction writes to them, and the origin point
    must exist before the first event, so a relay started later still publishes
    every event ever written.
    """
    existing = set(await db.list_collection_names())
    for name in ALL_COLLECTIONS:
        if name not in existing:
            try:
                await db.create_collection(name)
            except Exception as exc:  # a concurrent creator won the race
                if "already exists" not in str(exc):
                    raise
    for name, indexes in INDEXES.items():
        await db[name].create_indexes(indexes)
    state = db[RELAY_STATE]
    if await state.find_one({"_id": ORIGIN}) is None:
        pipeline = [{"$match": {"operationType": "insert"}}]
        async with await db[EVENTS].watch(pipeline, max_await_time_ms=1) as stream:
            await stream.try_next()
            token = stream.resume_token
        await state.update_one({"_id": ORIGIN}, {"$setOnInsert": {"token": token}}, upsert=True)

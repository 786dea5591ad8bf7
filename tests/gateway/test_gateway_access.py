"""Tokens and isolation: every endpoint but /healthz needs a valid token, and one user's sites,
apps, jobs, batch jobs and events do not exist for another, whatever the verb."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from gateway_helpers import World, http_as, make_world, new_token
from support.waiting import until

from balsam_mq.domain.users import parse_token
from balsam_mq.gateway import auth
from balsam_mq.settings import Settings
from balsam_mq.store import Store

KINDS = ("sites", "apps", "jobs", "batch_jobs", "events")


@pytest.fixture
async def alice(settings: Settings, store: Store, gateway: str) -> World:
    return await make_world(settings, store, gateway, "alice")


@pytest.fixture
async def bob(settings: Settings, store: Store, gateway: str) -> World:
    return await make_world(settings, store, gateway, "bob", jobs=2)


def _sample(path: str) -> str:
    return path.replace("{kind}", "jobs").replace("{object_id}", "1")


async def test_every_endpoint_but_healthz_needs_a_valid_token(
    gateway: str, store: Store, alice: World
) -> None:
    async with http_as(gateway, None) as anonymous:
        spec = (await anonymous.get("/openapi.json")).json()
        assert (await anonymous.get("/healthz")).status_code == 200
        routes = [
            (method.upper(), _sample(path))
            for path, methods in spec["paths"].items()
            for method in methods
            if path not in ("/healthz",)
        ]
        assert len(routes) > 20
        for method, path in routes:
            answer = await anonymous.request(method, path, json={})
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["error"] == "AuthError"
            assert "token" in answer.json()["detail"]
    i = len(alice.token) - 5  # one character of the secret changed (never to itself)
    altered = alice.token[:i] + ("A" if alice.token[i] != "A" else "B") + alice.token[i + 1 :]
    for bad in ("nonsense", "bmq_0123456789abcdef_" + "x" * 43, altered):
        async with http_as(gateway, bad) as client:
            answer = await client.get("/jobs")
            assert answer.status_code == 401, bad
    await store.users.revoke("alice")
    async with http_as(gateway, alice.token) as client:

        async def refused() -> bool:
            return (await client.get("/whoami")).status_code == 401

        await until(refused, timeout=auth.CACHE_S + 5)  # a verdict lives CACHE_S at most
        assert "revoked" in (await client.get("/whoami")).json()["detail"]
    expired = await new_token(store, "carol", timedelta(seconds=-1))
    async with http_as(gateway, expired) as client:
        answer = await client.get("/jobs")
        assert answer.status_code == 401
        assert "expired" in answer.json()["detail"]


async def test_tokens_are_stored_only_as_hashes(store: Store, alice: World) -> None:
    doc = await store.db["users"].find_one({"username": "alice"})
    assert doc is not None
    _, secret = parse_token(alice.token)  # the secret itself may hold "_"
    assert secret not in str(doc)
    assert len(doc["tokens"][0]["hash"]) == 64


async def test_listings_counts_and_values_show_only_the_callers_own(
    gateway: str, alice: World, bob: World
) -> None:
    async with http_as(gateway, bob.token) as client:
        for kind in KINDS:
            items = (await client.get(f"/{kind}", params={"limit": 1000})).json()["items"]
            assert items, kind
            assert all(_belongs(kind, item, bob) for item in items), kind
            everything: dict[str, Any] = {"where": []}
            count = (await client.post(f"/{kind}/count", json=everything)).json()["count"]
            assert count == len(items), kind
            rows = await client.post(f"/{kind}/values", json={**everything, "fields": ["id"]})
            assert len(rows.json()["rows"]) == len(items), kind
        jobs = (await client.get("/jobs", params={"tags": "owner:alice"})).json()["items"]
        assert jobs == []


def _belongs(kind: str, item: dict[str, Any], world: World) -> bool:
    if kind == "sites":
        return bool(item["owner"] == world.user and item["id"] == world.site_id)
    return bool(item["site_id"] == world.site_id)


async def test_another_users_objects_answer_404_to_every_verb(
    gateway: str, store: Store, alice: World, bob: World
) -> None:
    theirs = {
        "sites": alice.site_id,
        "apps": alice.app_id,
        "jobs": alice.job_ids[0],
        "batch_jobs": alice.batch_job_id,
    }
    events = await store.db["events"].find_one({"site_id": alice.site_id})
    assert events is not None
    theirs_event = str(events["_id"])
    async with http_as(gateway, bob.token) as client:
        for kind, object_id in [*theirs.items(), ("events", theirs_event)]:
            assert (await client.get(f"/{kind}/{object_id}")).status_code == 404, kind
            patch = await client.patch(f"/{kind}/{object_id}", json={"set": {}})
            assert patch.status_code == 404, kind
        for kind, object_id in theirs.items():
            assert (await client.delete(f"/{kind}/{object_id}")).status_code == 404, kind
        # bulk by list and by filter touch nothing of alice's
        by_list = {"where": [["id", "in", alice.job_ids]], "set": {"tags.x": "y"}}
        assert (await client.patch("/jobs", json=by_list)).json() == {"updated": 0}
        by_filter = {"where": [], "set": {"tags.touched": "bob"}}
        assert (await client.patch("/jobs", json=by_filter)).json() == {"updated": 2}
        deleted = await client.post("/jobs/delete", json={"where": [["id", "in", alice.job_ids]]})
        assert deleted.json() == {"deleted": 0}
        moved = await client.post(
            "/jobs/state",
            json={"where": [["id", "in", alice.job_ids]], "state": "FAILED"},
        )
        assert moved.json() == {"updated": 0}
        change = {"job_id": alice.job_ids[0], "expect": "PREPROCESSED", "to": "FAILED"}
        result = (await client.post("/jobs/transition", json={"changes": [change]})).json()
        assert result["moved"] == [] and result["unmoved"] == {str(alice.job_ids[0]): None}
        batch = {"where": [["site_id", "eq", alice.site_id]], "state": "pending_deletion"}
        assert (await client.post("/batch_jobs/state", json=batch)).json() == {"updated": 0}
        # only a site's owner syncs apps to it or creates jobs or batch jobs on it
        app = (await client.get(f"/apps/{bob.app_id}")).json()
        app.pop("id"), app.pop("last_update")
        app["site_id"] = alice.site_id
        assert (await client.put("/apps", json=app)).status_code == 404
        job = {"app_id": alice.app_id, "workdir": "evil/1"}
        assert (await client.post("/jobs", json={"jobs": [job]})).status_code == 404
        child = {"app_id": bob.app_id, "workdir": "child", "parent_ids": [alice.job_ids[0]]}
        assert (await client.post("/jobs", json={"jobs": [child]})).status_code == 422
        batch_job = {"site_id": alice.site_id, "num_nodes": 1}
        assert (await client.post("/batch_jobs", json=batch_job)).status_code == 404
        # moving one's own document onto another's site is a write to it: refused
        move = {"set": {"site_id": alice.site_id}}
        assert (await client.patch(f"/batch_jobs/{bob.batch_job_id}", json=move)).status_code == 422
    untouched = await store.jobs.get_many(alice.job_ids)
    assert all("touched" not in j.tags and "x" not in j.tags for j in untouched)
    assert {j.state.value for j in untouched} == {"PREPROCESSED"}
    assert await store.db["apps"].count_documents({"site_id": alice.site_id}) == 1


async def test_a_site_made_through_the_gateway_belongs_to_its_creator(
    gateway: str, alice: World
) -> None:
    async with http_as(gateway, alice.token) as client:
        made = await client.post("/sites", json={"name": "second", "owner": "bob"})
        assert made.status_code == 422 and "belongs to its creator" in made.json()["detail"]
        made = await client.post("/sites", json={"name": "second"})
        assert made.status_code == 201 and made.json()["owner"] == "alice"
        assert (await client.get("/whoami")).json()["user"] == "alice"

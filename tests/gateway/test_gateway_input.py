"""Bad input answers 4xx naming the field and the reason, and writes nothing."""

from __future__ import annotations

import pytest
from gateway_helpers import World, http_as, make_world

from balsam_mq.domain.serialization import MAX_BYTES
from balsam_mq.domain.wire import MAX_PAGE
from balsam_mq.gateway.limits import MAX_BODY_BYTES
from balsam_mq.settings import Settings
from balsam_mq.store import Store


@pytest.fixture
async def alice(settings: Settings, store: Store, gateway: str) -> World:
    return await make_world(settings, store, gateway, "alice", jobs=2)


async def test_bad_input_is_refused_with_the_field_and_the_reason(
    gateway: str, store: Store, alice: World
) -> None:
    async with http_as(gateway, alice.token) as client:
        cases = [
            # unknown fields, at any level
            (
                "POST",
                "/jobs",
                {"jobs": [{"app_id": alice.app_id, "workdir": "a", "colour": 1}]},
                422,
                "colour",
            ),
            ("POST", "/jobs/count", {"where": [], "bogus": 1}, 422, "bogus"),
            ("POST", "/sites", {"name": "x", "admin": True}, 422, "admin"),
            # wrong types
            ("POST", "/jobs", {"jobs": [{"app_id": "one", "workdir": "a"}]}, 422, "app_id"),
            (
                "POST",
                "/jobs",
                {
                    "jobs": [
                        {"app_id": alice.app_id, "workdir": "a", "resources": {"num_nodes": "2"}}
                    ]
                },
                422,
                "num_nodes",
            ),
            (
                "PATCH",
                f"/jobs/{alice.job_ids[0]}",
                {"set": {"resources.num_nodes": 0}},
                422,
                "num_nodes",
            ),
            ("PATCH", f"/jobs/{alice.job_ids[0]}", {"set": {"tags": ["x"]}}, 422, "tags"),
            ("POST", "/jobs/count", {"where": [["id", "eq", "seven"]]}, 422, "integer"),
            # fields and operators a query does not know
            ("POST", "/jobs/count", {"where": [["colour", "eq", 1]]}, 422, "colour"),
            ("POST", "/jobs/count", {"where": [["id", "near", 1]]}, 422, "near"),
            ("GET", "/jobs?order_by=tags", None, 422, "tags"),
            # invalid state names
            ("POST", "/jobs/count", {"where": [["state", "eq", "DONE"]]}, 422, "DONE"),
            ("GET", "/jobs?state=DONE", None, 422, "DONE"),
            ("POST", "/jobs/state", {"where": [], "state": "DONE"}, 422, "DONE"),
            # pages over the maximum
            ("GET", f"/jobs?limit={MAX_PAGE + 1}", None, 422, "limit"),
            ("POST", "/jobs/query", {"start": 0, "stop": MAX_PAGE + 1}, 422, str(MAX_PAGE)),
            # fields no caller may set
            ("PATCH", f"/jobs/{alice.job_ids[0]}", {"set": {"state": "RUNNING"}}, 422, "state"),
            ("PATCH", f"/jobs/{alice.job_ids[0]}", {"set": {"owner": "bob"}}, 422, "owner"),
            ("PATCH", f"/events/{'0' * 24}", {"set": {"to_state": "X"}}, 422, "append-only"),
            # workdirs that leave data/
            (
                "POST",
                "/jobs",
                {"jobs": [{"app_id": alice.app_id, "workdir": "../../etc"}]},
                422,
                "workdir",
            ),
            # what could never be queried, and what is not serialized parameters at all
            (
                "POST",
                "/jobs",
                {"jobs": [{"app_id": alice.app_id, "workdir": "t", "tags": {"a.b": "x"}}]},
                422,
                "tags key",
            ),
            (
                "POST",
                "/jobs",
                {"jobs": [{"app_id": alice.app_id, "workdir": "t", "parameters": "garbage!"}]},
                422,
                "parameters",
            ),
            (
                "POST",
                "/jobs",
                {"jobs": [{"app_id": alice.app_id, "workdir": "a\u0000b"}]},
                422,
                "NUL",
            ),
            ("GET", "/dead?limit=-1", None, 422, "limit"),
            # a serialized entity over the limit
            (
                "POST",
                "/jobs",
                {
                    "jobs": [
                        {
                            "app_id": alice.app_id,
                            "workdir": "big",
                            "parameters": "A" * (MAX_BYTES + 1),
                        }
                    ]
                },
                422,
                "parameters",
            ),
        ]
        for method, path, body, status, named in cases:
            answer = await client.request(method, path, json=body)
            assert answer.status_code == status, (method, path, answer.text)
            assert named in answer.json()["detail"], (method, path, answer.text)
        # an illegal transition: a user may not move a job to RUNNING
        change = {"job_id": alice.job_ids[0], "expect": "PREPROCESSED", "to": "RUNNING"}
        answer = await client.post("/jobs/transition", json={"changes": [change]})
        assert answer.status_code == 409
        assert "PREPROCESSED -> RUNNING" in answer.json()["detail"]
        # a body over the limit is refused before it is read
        huge = b"{" + b" " * (MAX_BODY_BYTES + 1) + b"}"
        answer = await client.post(
            "/jobs", content=huge, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 413 and "limit" in answer.json()["detail"]
    jobs = await store.jobs.get_many(alice.job_ids)
    assert {j.state.value for j in jobs} == {"PREPROCESSED"}
    assert all(j.resources.num_nodes == 1 and j.owner == "alice" for j in jobs)
    assert await store.db["jobs"].count_documents({}) == 2


async def test_a_bulk_creation_with_one_bad_job_creates_none(
    gateway: str, store: Store, alice: World
) -> None:
    good = [{"app_id": alice.app_id, "workdir": f"ok/{i}"} for i in range(50)]
    bad = {"app_id": alice.app_id, "workdir": "/etc/bad"}
    async with http_as(gateway, alice.token) as client:
        answer = await client.post("/jobs", json={"jobs": [*good, bad]})
        assert answer.status_code == 422 and "jobs[50]" in answer.json()["detail"]
        answer = await client.post("/jobs", json={"jobs": [*good, {"app_id": 999, "workdir": "x"}]})
        assert answer.status_code == 404 and "999" in answer.json()["detail"]
        assert await store.db["jobs"].count_documents({}) == 2
        made = await client.post("/jobs", json={"jobs": good})
        assert made.status_code == 201
        assert [j["workdir"] for j in made.json()["items"]] == [f"ok/{i}" for i in range(50)]
        assert {j["owner"] for j in made.json()["items"]} == {"alice"}
    assert await store.db["jobs"].count_documents({}) == 52

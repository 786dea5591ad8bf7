"""The gateway against its own OpenAPI spec: schemathesis sends generated requests (valid and
invalid) to every operation but the endless event stream, as a user with a site, an app,
jobs and a batch job, and no answer may be a 5xx or break the response schema it documents.
The requests that once broke it (found by the fuzz or beside it) are replayed one by one."""

from __future__ import annotations

import functools
import os
from typing import Any

import anyio
import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from balsam_mq.sdk import ApplicationDefinition, BatchJob, Client, Job, Site

# examples per operation and generation mode: deterministic, the test well under a minute;
# BALSAM_FUZZ_EXAMPLES=100 searches deeper, with fresh random examples each time
EXAMPLES = int(os.environ.get("BALSAM_FUZZ_EXAMPLES", "12"))
CHECKS = [not_a_server_error, response_schema_conformance]
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


class Adder(ApplicationDefinition):
    site = "fuzzed"

    def run(self, x: int, y: int = 1) -> int:
        return x + y


async def populate() -> tuple[int, int]:
    """A site, an app, jobs (one with parents) and a batch job of alice; the ids of the
    site and of a job."""
    site = await Site.objects.create(name="fuzzed", path="/sites/fuzzed")
    await Adder.sync()
    jobs = await Job.objects.bulk_create(
        [Adder.submit(f"add/{i}", x=i, tags={"run": str(i % 2)}, save=False) for i in range(4)]
    )
    await Job.objects.bulk_create(
        [Adder.submit("add/child", x=9, parent_ids=[j.id for j in jobs if j.id], save=False)]
    )
    assert site.id is not None
    await BatchJob.objects.create(site_id=site.id, num_nodes=1, wall_time_min=5)
    assert jobs[0].id is not None
    return site.id, jobs[0].id


def destructive(operation: schemathesis.APIOperation) -> bool:
    return operation.method.upper() == "DELETE" or operation.path.endswith("/delete")


def fuzz(spec: dict[str, Any], url: str, token: str) -> list[str]:
    """Every operation fuzzed (those that delete last); the failures, one text each."""
    schema = schemathesis.openapi.from_dict(spec).exclude(path="/events/stream")
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=destructive)
    headers = {"Authorization": f"Bearer {token}"}
    failures = []
    for operation in operations:
        strategy = operation.as_strategy(MODES[0]) | operation.as_strategy(MODES[1])

        @settings(
            max_examples=EXAMPLES * len(MODES),
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            derandomize="BALSAM_FUZZ_EXAMPLES" not in os.environ,
        )
        @given(case=strategy)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=url, headers=headers, checks=CHECKS, timeout=30)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}: {exc}")
    return failures


async def test_the_gateway_answers_as_its_openapi_spec_says(
    gateway: str, token: str, http_client: Client
) -> None:
    await populate()
    async with httpx.AsyncClient(base_url=gateway) as http:
        spec = (await http.get("/openapi.json")).raise_for_status().json()
    failures = await anyio.to_thread.run_sync(functools.partial(fuzz, spec, gateway, token))
    assert not failures, "\n\n".join(failures)


# each once answered 5xx, or stored a job no listing could read back again
BROKE: list[tuple[str, str, Any]] = [
    ("POST", "/sites", b"\x00"),  # not JSON: starlette's own 400, now with an error name
    ("POST", "/sites", {"name": "n", "path": "/x", "settings": {"a\u0000": 1}}),  # NUL key
    (
        "POST",
        "/jobs/transition",
        {"changes": [{"job_id": 2**70, "expect": "READY", "to": "FAILED"}]},
    ),
    ("GET", "/jobs?tags=", None),  # an empty tag name: a field path MongoDB refuses
    ("GET", "/jobs?tags=:x", None),
    ("POST", "/jobs/query", {"where": [["tags", "eq", "$x:1"]]}),
    ("PATCH", "/jobs", {"where": [], "set": {"tags.": "x"}}),
    ("PATCH", "/jobs/{job}", {"set": {"tags.a.b": "x"}}),  # a tag that is a dict
    ("PATCH", "/jobs/{job}", {"set": {"data.$x": 1}}),
    ("PATCH", "/jobs", {"where": [], "set": {"resources": {"num_nodes": 0}}}),
    ("PATCH", "/sites/{site}", {"set": {"settings..x": 1}}),
    ("PATCH", "/apps", {"where": [], "set": {"description.x": 1}}),  # inside a string
    ("PATCH", "/apps", {"where": [], "set": {"parameters.x": {"required": "maybe"}}}),
    ("GET", "/jobs?parameters=a.b:1", None),  # a parameter name MongoDB reads as a path
    ("PATCH", "/jobs/{job}", {"set": {"parameters": {"x": {"__dill__": "!!"}}}}),
    ("PATCH", "/jobs/{job}", {"set": {"parameters.x": 1}}),  # parameters go whole
    ("PATCH", "/jobs/{job}", {"set": {"parameters": {"$x": 1}}}),
]


async def test_requests_that_broke_the_gateway_are_refused_with_a_reason(
    gateway: str, token: str, http_client: Client
) -> None:
    site_id, job_id = await populate()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=gateway, headers=headers) as http:
        for method, path, body in BROKE:
            url = path.format(site=site_id, job=job_id)
            if isinstance(body, bytes):
                sent = {"content": body, "headers": {"Content-Type": "application/json"}}
            else:
                sent = {} if body is None else {"json": body}
            response = await http.request(method, url, **sent)
            assert 400 <= response.status_code < 500, (method, url, response.text)
            assert {"error", "detail"} <= response.json().keys(), (method, url, response.text)
        listed = (await http.get("/jobs")).raise_for_status().json()["items"]
    assert len(listed) == 5  # every job still reads back

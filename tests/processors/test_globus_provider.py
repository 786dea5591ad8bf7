"""The batched Globus provider against recorded responses, never a live Globus service.

HTTP is served by a ``responses`` mock: globus-sdk's own recorded fixtures
(``globus_sdk.testing``: submission id, submit, cancel, the invalid_grant answer) and the
documents in ``globus_responses/`` (task documents in each end state, skipped errors,
token responses), written after the SDK's fixtures and Globus's documented fields. So these
tests check the requests we build and how we read Globus's answers; they cannot tell whether
a live service accepts a given document.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
import responses
from globus_sdk import NativeAppAuthClient, TransferClient
from globus_sdk.testing import get_response_set, load_response

from balsam_mq.errors import ConfigError, JobError
from balsam_mq.processors.batches import Item
from balsam_mq.processors.globus import GlobusLocation, pull, push
from balsam_mq.processors.globus_auth import LOGIN_COMMAND, login
from balsam_mq.processors.transfers import Transfer, move
from balsam_mq.site.config import TransferSettings

RECORDED = Path(__file__).parent / "globus_responses"
TASKS: dict[str, dict[str, Any]] = json.loads((RECORDED / "tasks.json").read_text())
REMOTE = "4c0bbd84-8b0e-4a3b-9d64-3f6fd3b1e1a7"
SITE = "9d6d994a-6d04-11e5-ba46-22000b92c6ec"
CLIENT_ID = "7f3c1d2e-0a4b-4c5d-8e6f-1a2b3c4d5e6f"
TRANSFER = "https://transfer.api.globus.org/v0.10"
TOKEN_URL = "https://auth.globus.org/v2/oauth2/token"
RESOURCE_SERVER = "transfer.api.globus.org"


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def task_id(http: responses.RequestsMock) -> str:
    """A submission id and an accepted submit, as globus-sdk recorded them."""
    load_response(TransferClient.get_submission_id, requests_mock=http)
    submitted = load_response(TransferClient.submit_transfer, requests_mock=http)
    return str(submitted.metadata["task_id"])


@pytest.fixture
def client() -> Iterator[TransferClient]:
    with TransferClient(app_name="balsam_mq tests") as tc:
        yield tc


def serve_task(http: responses.RequestsMock, task_id: str, *states: str) -> None:
    """``get_task`` answers each state in turn, then the last one again."""
    for state in states:
        http.add("GET", f"{TRANSFER}/task/{task_id}", json={**TASKS[state], "task_id": task_id})


def serve_cancel(http: responses.RequestsMock, task_id: str) -> None:
    recorded = get_response_set(TransferClient.cancel_task).lookup("default")
    http.add("POST", f"{TRANSFER}/task/{task_id}/cancel", json=recorded.json)


def calls(http: responses.RequestsMock, method: str, path: str) -> list[Any]:
    return [c for c in http.calls if c.request.method == method and c.request.url.endswith(path)]


def items(tmp_path: Path) -> list[Item]:
    """Two files and a directory tree, of three jobs."""
    return [
        Item(("j1", "deck"), PurePosixPath("/projects/h2o/run1/deck.nw"), tmp_path / "w1", False),
        Item(("j2", "deck"), PurePosixPath("/projects/h2o/run2/deck.nw"), tmp_path / "w2", False),
        Item(("j3", "tree"), PurePosixPath("/projects/h2o/run3/tree"), tmp_path / "w3/tree", True),
    ]


async def run(direction: str, batch: list[Item], client: TransferClient, **kw: Any) -> Any:
    move = pull if direction == "pull" else push
    options: dict[str, Any] = {"timeout_s": 30, "poll_s": 0.01, "transport": client}
    options.update(kw)
    location = GlobusLocation.parse(f"globus://{REMOTE}/projects")
    return await move(
        location,
        batch,
        site_endpoint=SITE,
        tokens=Path("/nonexistent"),
        client_id=CLIENT_ID,
        **options,
    )


# the request


@pytest.mark.parametrize("direction", ["pull", "push"])
async def test_one_task_per_batch_with_every_item_and_the_options(
    http: responses.RequestsMock,
    task_id: str,
    client: TransferClient,
    tmp_path: Path,
    direction: str,
) -> None:
    serve_task(http, task_id, "ACTIVE", "SUCCEEDED")
    batch = items(tmp_path)
    result = await run(direction, batch, client)
    (submit,) = calls(http, "POST", "/transfer")
    body = json.loads(submit.request.body)
    ends = (REMOTE, SITE) if direction == "pull" else (SITE, REMOTE)
    assert (body["source_endpoint"], body["destination_endpoint"]) == ends
    pairs = [(str(i.remote), str(i.local)) for i in batch]
    expected = pairs if direction == "pull" else [(b, a) for a, b in pairs]
    assert [(d["source_path"], d["destination_path"]) for d in body["DATA"]] == expected
    assert [d["recursive"] for d in body["DATA"]] == [False, False, True]
    recorded = get_response_set(TransferClient.get_submission_id).metadata["submission_id"]
    assert body["DATA_TYPE"] == "transfer" and body["submission_id"] == recorded
    assert body["label"].startswith(f"balsam_mq {direction} batch ")
    assert body["label"].endswith(", 3 items")
    assert body["sync_level"] == 3  # checksum
    assert body["skip_source_errors"] is True and body["fail_on_quota_errors"] is True
    assert not any(body[f"notify_on_{what}"] for what in ("succeeded", "failed", "inactive"))
    assert body["deadline"]
    assert result.task_id == task_id and result.processes == 0 and result.returncode is None
    assert len(calls(http, "GET", f"/task/{task_id}")) == 2  # read at once, then polled


async def test_two_items_with_one_destination_send_the_first_only(
    http: responses.RequestsMock, task_id: str, client: TransferClient, tmp_path: Path
) -> None:
    serve_task(http, task_id, "SUCCEEDED")
    first, second, _ = items(tmp_path)
    twin = Item(("j9", "out"), first.remote, tmp_path / "w9/deck.nw", False)
    result = await run("push", [first, twin, second], client)
    (submit,) = calls(http, "POST", "/transfer")
    assert len(json.loads(submit.request.body)["DATA"]) == 2
    assert [r.done for r in result.items] == [True, False, True]
    assert "also another item's destination" in str(result.items[1].error)


async def test_an_empty_batch_asks_nothing(
    http: responses.RequestsMock, client: TransferClient
) -> None:
    result = await run("pull", [], client)
    assert result.items == [] and not http.calls


# the end states


async def test_succeeded_marks_every_item_done_with_the_tasks_bytes_spread(
    http: responses.RequestsMock, task_id: str, client: TransferClient, tmp_path: Path
) -> None:
    serve_task(http, task_id, "ACTIVE", "ACTIVE", "SUCCEEDED")
    batch = items(tmp_path)
    result = await run("pull", batch, client)
    assert [r.key for r in result.items] == [i.key for i in batch]
    assert all(r.done and not r.missing and r.error is None for r in result.items)
    assert [r.bytes for r in result.items] == [1001, 1000, 1000]  # 3001 bytes in the task
    assert result.task_id == task_id
    assert not calls(http, "GET", "/skipped_errors")  # the task counted none
    assert not calls(http, "POST", "/cancel")


async def test_skipped_sources_are_missing_or_errors_and_the_rest_arrived(
    http: responses.RequestsMock, task_id: str, client: TransferClient, tmp_path: Path
) -> None:
    serve_task(http, task_id, "SUCCEEDED_WITH_SKIPS")
    skipped = json.loads((RECORDED / "skipped_errors.json").read_text())
    http.add("GET", f"{TRANSFER}/task/{task_id}/skipped_errors", json=skipped)
    result = await run("pull", items(tmp_path), client)
    one, two, three = result.items
    assert one.done and one.bytes == 1000
    assert two.missing and not two.done and two.error is None  # FILE_NOT_FOUND: wait for it
    assert not three.done and not three.missing  # a file inside the tree was refused
    assert "/projects/h2o/run3/tree/secret.dat: PERMISSION_DENIED" in str(three.error)


async def test_a_skipped_output_of_a_push_is_its_error(
    http: responses.RequestsMock, task_id: str, client: TransferClient, tmp_path: Path
) -> None:
    serve_task(http, task_id, "SUCCEEDED_WITH_SKIPS")
    item = Item(("j2", "out"), PurePosixPath("/projects/h2o/out.nw"), tmp_path / "w2/out.nw", False)
    skipped = json.loads((RECORDED / "skipped_errors.json").read_text())
    skipped["DATA"][0]["source_path"] = str(item.local)
    http.add("GET", f"{TRANSFER}/task/{task_id}/skipped_errors", json=skipped)
    (result,) = (await run("push", [item], client)).items
    assert not result.done and not result.missing
    assert result.error == f"output {item.local} is missing"


async def test_failed_gives_every_item_the_tasks_error(
    http: responses.RequestsMock, task_id: str, client: TransferClient, tmp_path: Path
) -> None:
    serve_task(http, task_id, "ACTIVE", "FAILED")
    result = await run("push", items(tmp_path), client)
    expected = (
        f"Globus task {task_id} FAILED: PERMISSION_DENIED: "
        "Permission denied on the destination endpoint"
    )
    assert [r.error for r in result.items] == [expected] * 3
    assert not any(r.done or r.missing for r in result.items)
    assert not calls(http, "POST", "/cancel")


async def test_a_task_still_active_at_the_timeout_is_cancelled(
    http: responses.RequestsMock, task_id: str, client: TransferClient, tmp_path: Path
) -> None:
    serve_task(http, task_id, "ACTIVE")
    serve_cancel(http, task_id)
    result = await run("pull", items(tmp_path), client, timeout_s=0.2, poll_s=0.02)
    assert len(calls(http, "POST", f"/task/{task_id}/cancel")) == 1
    assert len(calls(http, "GET", f"/task/{task_id}")) > 1
    for r in result.items:
        assert not r.done and not r.missing
        assert f"Globus task {task_id} timed out after 0.2 s and was cancelled" in str(r.error)
        assert "last status: ACTIVE, Connection failed" in str(r.error)


async def test_an_inactive_task_is_cancelled_and_says_to_log_in_again(
    http: responses.RequestsMock, task_id: str, client: TransferClient, tmp_path: Path
) -> None:
    serve_task(http, task_id, "ACTIVE", "INACTIVE")
    serve_cancel(http, task_id)
    result = await run("pull", items(tmp_path), client)
    assert len(calls(http, "POST", f"/task/{task_id}/cancel")) == 1
    for r in result.items:
        assert not r.done and not r.missing
        assert "went INACTIVE (Authentication expired)" in str(r.error)
        assert f"log in again with `{LOGIN_COMMAND}`" in str(r.error)


async def test_a_call_cancelled_while_waiting_cancels_the_task(
    http: responses.RequestsMock, task_id: str, client: TransferClient, tmp_path: Path
) -> None:
    serve_task(http, task_id, "ACTIVE")
    serve_cancel(http, task_id)
    with anyio.move_on_after(0.3) as scope:
        await run("pull", items(tmp_path), client, timeout_s=60, poll_s=0.02)
    assert scope.cancelled_caught
    assert len(calls(http, "POST", f"/task/{task_id}/cancel")) == 1


@pytest.mark.parametrize(
    ("status", "answer", "said"),
    [
        (400, {"code": "ClientError.BadRequest", "message": "Invalid label"}, "Invalid label"),
        (
            401,
            {"code": "AuthenticationFailed", "message": "Token is not active"},
            f"log in again with `{LOGIN_COMMAND}`",
        ),
    ],
)
async def test_a_refused_submit_is_every_items_error_without_raising(
    http: responses.RequestsMock,
    client: TransferClient,
    tmp_path: Path,
    status: int,
    answer: dict[str, str],
    said: str,
) -> None:
    load_response(TransferClient.get_submission_id, requests_mock=http)
    http.add("POST", f"{TRANSFER}/transfer", json=answer, status=status)
    result = await run("pull", items(tmp_path), client)
    assert result.task_id.startswith("globus-")
    for r in result.items:
        assert not r.done and "Globus did not accept batch" in str(r.error) and said in str(r.error)


# credentials


def recorded_token(name: str) -> dict[str, Any]:
    return dict(json.loads((RECORDED / name).read_text()))


def test_login_stores_the_exchanged_tokens_in_a_file_never_readable_by_others(
    http: responses.RequestsMock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    http.add("POST", TOKEN_URL, json=recorded_token("token_exchange.json"))
    modes: list[int] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:  # the file as it is about to appear
        modes.append(stat.S_IMODE(os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    shown: list[str] = []
    old_umask = os.umask(0)  # the most permissive umask must not matter
    try:
        login(
            tmp_path / "site" / "globus.json",
            CLIENT_ID,
            prompt=lambda text: shown.append(text) or " CODE-1 \n",
        )
    finally:
        os.umask(old_umask)
    tokens = tmp_path / "site" / "globus.json"
    assert modes == [0o600] and stat.S_IMODE(tokens.stat().st_mode) == 0o600
    (url,) = [w for w in shown[0].split() if w.startswith("https://")]
    query = parse_qs(urlsplit(url).query)
    assert query["client_id"] == [CLIENT_ID] and query["access_type"] == ["offline"]
    assert "urn:globus:auth:scope:transfer.api.globus.org:all" in query["scope"][0]
    (exchange,) = http.calls
    sent = parse_qs(exchange.request.body)
    assert sent["code"] == ["CODE-1"] and sent["grant_type"] == ["authorization_code"]
    stored = json.loads(tokens.read_text())
    assert stored["client_id"] == CLIENT_ID
    entry = stored["tokens"][RESOURCE_SERVER]
    assert entry["access_token"] == "AgAAAAexchanged-access-token"
    assert entry["refresh_token"] == "AgAAAArefresh-token-1"


def test_a_refused_code_is_a_config_error(http: responses.RequestsMock, tmp_path: Path) -> None:
    load_response(
        NativeAppAuthClient.oauth2_exchange_code_for_tokens,
        case="invalid_grant",
        requests_mock=http,
    )
    with pytest.raises(
        ConfigError, match=f"login with client '{CLIENT_ID}' failed: 401 invalid_grant$"
    ):
        login(tmp_path / "globus.json", CLIENT_ID, prompt=lambda text: "WRONG")
    assert not (tmp_path / "globus.json").exists()


async def test_an_expired_access_token_is_refreshed_and_written_back_0600(
    http: responses.RequestsMock, task_id: str, tmp_path: Path
) -> None:
    tokens = tmp_path / "globus.json"
    entry = {**recorded_token("token_exchange.json"), "expires_at_seconds": 1_000_000}
    tokens.write_text(json.dumps({"client_id": CLIENT_ID, "tokens": {RESOURCE_SERVER: entry}}))
    tokens.chmod(0o600)
    http.add("POST", TOKEN_URL, json=recorded_token("token_refresh.json"))
    serve_task(http, task_id, "SUCCEEDED")
    location = GlobusLocation.parse(f"globus://{REMOTE}")
    result = await pull(
        location,
        items(tmp_path),
        site_endpoint=SITE,
        tokens=tokens,
        client_id=CLIENT_ID,
        timeout_s=30,
        poll_s=0.01,
    )
    assert all(r.done for r in result.items)
    (refresh,) = calls(http, "POST", "/v2/oauth2/token")
    sent = parse_qs(refresh.request.body)
    assert sent["grant_type"] == ["refresh_token"] and sent["refresh_token"] == [
        "AgAAAArefresh-token-1"
    ]
    (submit,) = calls(http, "POST", "/transfer")
    assert submit.request.headers["Authorization"] == "Bearer AgAAAArefreshed-access-token"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    stored = json.loads(tokens.read_text())["tokens"][RESOURCE_SERVER]
    assert stored["access_token"] == "AgAAAArefreshed-access-token"
    assert stored["expires_at_seconds"] > 1_000_000
    assert stored["refresh_token"] == "AgAAAArefresh-token-1"  # kept: the answer had none
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


@pytest.mark.parametrize("content", [None, "not json", '{"client_id": "x", "tokens": {}}'])
async def test_without_a_usable_token_file_every_item_says_to_log_in(
    http: responses.RequestsMock, tmp_path: Path, content: str | None
) -> None:
    tokens = tmp_path / "globus.json"
    if content is not None:
        tokens.write_text(content)
    location = GlobusLocation.parse(f"globus://{REMOTE}")
    result = await push(
        location,
        items(tmp_path),
        site_endpoint=SITE,
        tokens=tokens,
        client_id=CLIENT_ID,
        timeout_s=30,
    )
    assert not http.calls
    assert result.task_id.startswith("globus-") and result.processes == 0
    for r in result.items:
        assert not r.done and not r.missing
        assert "run `balsam-mq site globus-login SITE_DIR`" in str(r.error)
        assert str(tokens) in str(r.error)


# locations


@pytest.mark.parametrize(
    ("uri", "endpoint", "prefix"),
    [
        (f"globus://{REMOTE}", REMOTE, "/"),
        (f"globus://{REMOTE}/", REMOTE, "/"),
        (f"globus://{REMOTE.upper()}/projects/h2o/", REMOTE, "/projects/h2o"),
        (f"globus://{REMOTE}/~/run%201/./x", REMOTE, "/~/run 1/x"),
    ],
)
def test_location_parse_accepts(uri: str, endpoint: str, prefix: str) -> None:
    assert GlobusLocation.parse(uri) == GlobusLocation(endpoint, prefix)


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        (f"rsync://{REMOTE}/x", "the scheme is 'rsync', not globus://"),
        ("globus://", "the endpoint UUID is missing"),
        ("globus:///data", "the endpoint UUID is missing"),
        ("globus://polaris-dtn/data", "'polaris-dtn' is not an endpoint UUID"),
        (f"globus://me@{REMOTE}/data", f"'me@{REMOTE}' is not an endpoint UUID"),
        (f"globus://{REMOTE}:443/data", f"'{REMOTE}:443' is not an endpoint UUID"),
        (f"globus://{REMOTE}/data/../etc", "the prefix may not contain '..'"),
        (f"globus://{REMOTE}/data?x=1", "a query or fragment is not allowed"),
        (f"globus://{REMOTE}/a%00b", "the prefix contains a NUL character"),
    ],
)
def test_location_parse_refuses_naming_the_uri_and_the_problem(uri: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GlobusLocation.parse(uri)
    assert str(caught.value).startswith(f"transfer location {uri!r}: {problem}")
    assert "expected globus://<endpoint-uuid>[/prefix]" in str(caught.value)


def test_remote_paths_stay_below_the_prefix() -> None:
    location = GlobusLocation.parse(f"globus://{REMOTE}/data")
    assert location.remote("/a/b") == PurePosixPath("/data/a/b")
    assert location.remote("/a/./c/../b/") == PurePosixPath("/data/a/b")
    with pytest.raises(
        JobError, match=r"'/a/\.\./\.\./etc' escapes the prefix '/data' of globus://"
    ):
        location.remote("/a/../../etc")
    with pytest.raises(JobError, match="is not an absolute path"):
        location.remote("a/b")


async def test_a_refused_refresh_token_says_to_log_in_again(
    http: responses.RequestsMock, tmp_path: Path
) -> None:
    tokens = tmp_path / "globus.json"
    entry = {**recorded_token("token_exchange.json"), "expires_at_seconds": 1_000_000}
    tokens.write_text(json.dumps({"client_id": CLIENT_ID, "tokens": {RESOURCE_SERVER: entry}}))
    load_response(TransferClient.get_submission_id, requests_mock=http)
    load_response(
        NativeAppAuthClient.oauth2_exchange_code_for_tokens,  # the same token URL refreshes
        case="invalid_grant",
        requests_mock=http,
    )
    result = await pull(
        GlobusLocation.parse(f"globus://{REMOTE}"),
        items(tmp_path),
        site_endpoint=SITE,
        tokens=tokens,
        client_id=CLIENT_ID,
        timeout_s=30,
    )
    assert not calls(http, "POST", "/transfer")
    for r in result.items:
        assert not r.done and not r.missing
        assert "401 invalid_grant" in str(r.error)
        assert f"log in again with `{LOGIN_COMMAND}`" in str(r.error)


async def test_the_stage_in_of_a_batch_goes_in_one_globus_task(
    http: responses.RequestsMock, task_id: str, tmp_path: Path
) -> None:
    """``transfers.move``, as the stage-in consumer calls it, with the site's settings and
    token file: the slots of a location go in one task, whose id each outcome names."""
    tokens = tmp_path / "globus-tokens.json"
    entry = {**recorded_token("token_exchange.json"), "expires_at_seconds": 4_000_000_000}
    tokens.write_text(json.dumps({"client_id": CLIENT_ID, "tokens": {RESOURCE_SERVER: entry}}))
    tokens.chmod(0o600)
    serve_task(http, task_id, "SUCCEEDED")
    uri = f"globus://{REMOTE}/data"
    settings = TransferSettings(
        locations={"arc": uri}, globus_endpoint=SITE, globus_client_id=CLIENT_ID
    )
    transfers = [
        Transfer(i, "deck", "in", "arc", uri, PurePosixPath(f"/data/{i}.nw"),
                 tmp_path / f"w{i}" / "deck.nw", False)
        for i in range(3)
    ]  # fmt: skip
    outcomes = await move(
        transfers, settings=settings, staging=tmp_path / ".staging", globus_tokens=tokens
    )
    assert {key: (o.done, o.task_id) for key, o in outcomes.items()} == {
        (i, "deck"): (True, task_id) for i in range(3)
    }
    (submit,) = calls(http, "POST", "/transfer")
    sent = [d["source_path"] for d in json.loads(submit.request.body)["DATA"]]
    assert sent == ["/data/0.nw", "/data/1.nw", "/data/2.nw"]

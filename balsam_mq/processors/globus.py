"""Batched Globus transfers: one Globus transfer task per call, followed until it ends.

The promise: :func:`pull` and :func:`push` submit exactly one Globus transfer task for all
their items (one transfer item each), between the location's endpoint and this site's, and
never raise for a transfer failure: the :class:`~balsam_mq.processors.batches.BatchResult`
tells, item by item, what arrived, what is missing (a source that does not exist yet) and
why the rest did not. They raise only for programming errors (a relative path, a
non-positive timeout) and a malformed site endpoint (:class:`~balsam_mq.errors.ConfigError`).

The task: local paths as they are here (the site's endpoint sees this filesystem at the
same paths); ``sync_level="checksum"``, so a batch sent again skips what arrived whole and
never takes a file a cancelled task left half written for arrived (``mtime`` or ``size``
could); ``skip_source_errors``, so an absent source is skipped (and listed by
``task_skipped_errors``) instead of failing the task; ``fail_on_quota_errors``, so a full
destination fails at once instead of retrying; its own ``deadline`` a little after ours; no
notification e-mails. It is read (``get_task``, in a worker thread) at once, then every
``poll_s``, and its end decides the items:

- SUCCEEDED: done, except those whose source was skipped (missing when not found, else an
  error); ``bytes`` is the task's ``bytes_transferred`` spread evenly over the items that
  arrived (Globus counts bytes per task; ``task_successful_transfers`` has no sizes);
- FAILED: each an error with the task's ``fatal_error`` (or ``nice_status``);
- INACTIVE (expired credentials, an endpoint to activate): the task cancelled, each item an
  error saying to log in again (as does any 401 or refused refresh token);
- still running at ``timeout_s``, or this call cancelled: the task cancelled, each item
  "timed out".

Credentials (``processors/globus_auth.py``): ``login`` runs Globus's native-app flow and
keeps the tokens in a file created 0600; :func:`pull` and :func:`push` refresh the access
token from it and write refreshed tokens back the same way. Without it every item says to
run the login command.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from globus_sdk import (
    GlobusAPIError,
    GlobusError,
    TransferClient,
    TransferData,
)

from balsam_mq.errors import ConfigError
from balsam_mq.processors import batches
from balsam_mq.processors.batches import BatchResult, Item, ItemResult
from balsam_mq.processors.globus_auth import LOGIN_COMMAND, said, transfer_client

log = logging.getLogger(__name__)

SYNC_LEVEL: Literal["checksum"] = "checksum"
DEADLINE_GRACE_S = 300.0  # the task's own deadline: this long after ours
ENDED = ("SUCCEEDED", "FAILED")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
T = TypeVar("T")


@dataclass(frozen=True)
class GlobusLocation:
    """``globus://<endpoint-uuid>[/prefix]``."""

    endpoint: str  # the endpoint (collection) UUID, lower case
    prefix: str  # absolute POSIX path on that endpoint ("/" if none)

    @classmethod
    def parse(cls, uri: str) -> GlobusLocation:
        def bad(what: str) -> ConfigError:
            return ConfigError(
                f"transfer location {uri!r}: {what} (expected globus://<endpoint-uuid>[/prefix])"
            )

        try:
            parts = urlsplit(uri)
        except ValueError as exc:
            raise bad(str(exc)) from None
        if parts.scheme != "globus":
            raise bad(f"the scheme is {parts.scheme or 'missing'!r}, not globus://")
        if parts.query or parts.fragment:
            raise bad("a query or fragment is not allowed")
        if not parts.netloc:
            raise bad("the endpoint UUID is missing")
        if not _UUID.fullmatch(parts.netloc):
            raise bad(f"{parts.netloc!r} is not an endpoint UUID")
        return cls(parts.netloc.lower(), batches.url_prefix(parts.path, bad))

    def remote(self, path: str) -> PurePosixPath:
        """``path`` (absolute) below the prefix: ``/a/b`` under ``/data`` is ``/data/a/b``."""
        return batches.below_prefix(self.prefix, path, self.label())

    def label(self) -> str:
        return f"globus://{self.endpoint}"


async def pull(
    location: GlobusLocation,
    items: Sequence[Item],
    *,
    site_endpoint: str,
    tokens: Path,
    client_id: str,
    timeout_s: float,
    poll_s: float = 5.0,
    transport: TransferClient | None = None,
) -> BatchResult:
    """Fetch every item's ``remote`` (on the location's endpoint) to its ``local`` (on
    ``site_endpoint``) in one Globus task; absent sources are ``missing``. ``transport``:
    a client to use instead of one built from ``tokens`` (tests)."""
    return await _batch(
        "pull", location, items, site_endpoint, tokens, client_id, timeout_s, poll_s, transport
    )


async def push(
    location: GlobusLocation,
    items: Sequence[Item],
    *,
    site_endpoint: str,
    tokens: Path,
    client_id: str,
    timeout_s: float,
    poll_s: float = 5.0,
    transport: TransferClient | None = None,
) -> BatchResult:
    """Send every item's ``local`` (on ``site_endpoint``) to its ``remote`` in one Globus
    task; a missing output is that item's error and the others are still sent."""
    return await _batch(
        "push", location, items, site_endpoint, tokens, client_id, timeout_s, poll_s, transport
    )


async def _batch(
    direction: Literal["pull", "push"],
    location: GlobusLocation,
    items: Sequence[Item],
    site_endpoint: str,
    tokens: Path,
    client_id: str,
    timeout_s: float,
    poll_s: float,
    transport: TransferClient | None,
) -> BatchResult:
    _check(items, timeout_s, poll_s)
    if not _UUID.fullmatch(site_endpoint):
        raise ConfigError(f"transfers.globus_endpoint {site_endpoint!r} is not an endpoint UUID")
    batch = uuid.uuid4().hex[:12]
    started_at = datetime.now(UTC)
    until = anyio.current_time() + timeout_s

    def finish(task_id: str, results: list[ItemResult]) -> BatchResult:
        return BatchResult(task_id, results, started_at, datetime.now(UTC), None, 0)

    if not items:
        return finish(f"globus-{batch}", [])
    owned: list[Any] = []  # clients made here, closed here
    if transport is None:
        made = await anyio.to_thread.run_sync(transfer_client, tokens, client_id)
        if isinstance(made, str):
            return finish(f"globus-{batch}", [batches.failed(item, made) for item in items])
        owned = made
    client: TransferClient = transport if transport is not None else owned[0]
    try:
        pull_ = direction == "pull"
        ends = (location.endpoint, site_endpoint.lower())
        source, destination = ends if pull_ else ends[::-1]
        deadline = started_at + timedelta(seconds=timeout_s + DEADLINE_GRACE_S)
        data = TransferData(
            source_endpoint=source,
            destination_endpoint=destination,
            label=f"balsam_mq {direction} batch {batch}, {len(items)} items",
            sync_level=SYNC_LEVEL,
            skip_source_errors=True,
            fail_on_quota_errors=True,
            deadline=deadline.isoformat(timespec="seconds"),
            notify_on_succeeded=False,
            notify_on_failed=False,
            notify_on_inactive=False,
        )
        refused: dict[int, str] = {}
        taken: set[str] = set()
        for index, item in enumerate(items):
            src, dst = (item.remote, item.local) if pull_ else (item.local, item.remote)
            if str(dst) in taken:
                refused[index] = f"{dst} is also another item's destination in batch {batch}"
                continue
            taken.add(str(dst))
            data.add_item(str(src), str(dst), recursive=item.recursive)
        try:
            task_id = await _call(_submit, client, data)
        except GlobusError as exc:
            problem = f"Globus did not accept batch {batch}: {said(exc)}"
            return finish(f"globus-{batch}", [batches.failed(item, problem) for item in items])
        results = await _follow(direction, client, task_id, items, until, timeout_s, poll_s)
        for index, why in refused.items():
            results[index] = batches.failed(items[index], why)
        return finish(task_id, results)
    finally:
        for one in owned:  # globus-sdk 4 clients own a session (3 has no close)
            getattr(one, "close", lambda: None)()


async def _follow(
    direction: Literal["pull", "push"],
    client: TransferClient,
    task_id: str,
    items: Sequence[Item],
    until: float,
    timeout_s: float,
    poll_s: float,
) -> list[ItemResult]:
    """Read the task until it ends or ``until``; cancel it unless it ended; the outcomes."""
    settled = False
    try:
        task, problem = await _watch(client, task_id, until, poll_s)
        status = task.get("status")
        if status not in ENDED:  # ended since the last read? sent again, checksums skip it
            await _cancel(client, task_id)
        settled = True
        if status == "SUCCEEDED":
            try:
                skipped = await _call(_skipped, client, task_id, task)
            except GlobusError as exc:
                problem = f"Globus task {task_id} SUCCEEDED; its skipped paths unread: {said(exc)}"
                return [batches.failed(item, problem) for item in items]
            return _arrived(direction, items, task, skipped)
        if problem is None:
            problem = _why(task_id, task, timeout_s)
        return [batches.failed(item, problem) for item in items]
    finally:
        if not settled:  # this call was cancelled: the task must not go on alone
            with anyio.CancelScope(shield=True):
                await _cancel(client, task_id)


async def _watch(
    client: TransferClient, task_id: str, until: float, poll_s: float
) -> tuple[dict[str, Any], str | None]:
    """The task's last document, and why watching stopped early (a refused read)."""
    task: dict[str, Any] = {}
    while True:
        with anyio.move_on_after(max(until - anyio.current_time(), 0.0)):
            try:
                task = await _call(_get, client, task_id, abandon=True)
            except GlobusAPIError as exc:
                if exc.http_status < 500 and exc.http_status != 429:
                    return task, f"Globus task {task_id} could not be read: {said(exc)}"
            except GlobusError:
                pass  # the network: the next read may work (the SDK retried already)
        if task.get("status") in (*ENDED, "INACTIVE"):
            return task, None
        left = until - anyio.current_time()
        if left <= 0:
            return task, None
        await anyio.sleep(min(poll_s, left))


def _why(task_id: str, task: dict[str, Any], timeout_s: float) -> str:
    status = task.get("status") or "unknown"
    nice = task.get("nice_status_short_description") or task.get("nice_status")
    fatal = task.get("fatal_error") or {}
    if status == "FAILED":
        said = ": ".join(str(v) for v in (fatal.get("code"), fatal.get("description")) if v)
        return f"Globus task {task_id} FAILED: {said or nice or 'no reason given'}"
    if status == "INACTIVE":
        return (
            f"Globus task {task_id} went INACTIVE ({nice or 'credentials expired'}) and was "
            f"cancelled: log in again with `{LOGIN_COMMAND}` (and activate the endpoints if "
            "Globus asks)"
        )
    return (
        f"Globus task {task_id} timed out after {timeout_s:g} s and was cancelled "
        f"(last status: {status}{', ' + nice if nice else ''})"
    )


def _arrived(
    direction: str, items: Sequence[Item], task: dict[str, Any], skipped: list[dict[str, Any]]
) -> list[ItemResult]:
    out: list[ItemResult] = []
    for item in items:
        source = item.remote if direction == "pull" else PurePosixPath(item.local)
        hits = [s for s in skipped if _within(str(s.get("source_path")), source)]
        mine = [s for s in hits if PurePosixPath(str(s.get("source_path"))) == source]
        if mine and mine[0].get("error_code") == "FILE_NOT_FOUND" and direction == "pull":
            out.append(batches.missing(item))
        elif mine and mine[0].get("error_code") == "FILE_NOT_FOUND":
            out.append(batches.failed(item, f"output {source} is missing"))
        elif hits:
            said = "; ".join(f"{s.get('source_path')}: {s.get('error_code')}" for s in hits[:4])
            out.append(batches.failed(item, f"Globus skipped {said}"))
        else:
            out.append(batches.done(item, 0))
    arrived = [i for i, r in enumerate(out) if r.done]
    share, extra = divmod(int(task.get("bytes_transferred") or 0), max(len(arrived), 1))
    for rank, i in enumerate(arrived):
        out[i] = replace(out[i], bytes=share + (rank < extra))
    return out


def _within(path: str, source: PurePosixPath) -> bool:
    found = PurePosixPath(path)
    return found == source or source in found.parents


def _check(items: Sequence[Item], timeout_s: float, poll_s: float) -> None:
    if timeout_s <= 0 or poll_s <= 0:
        raise ValueError(f"timeout_s and poll_s must be positive, not {timeout_s}, {poll_s}")
    for item in items:
        remote = item.remote
        if not remote.is_absolute() or remote == PurePosixPath("/") or ".." in remote.parts:
            raise ValueError(f"item {item.key!r}: remote {str(remote)!r} is not a path below /")
        if not item.local.is_absolute():
            raise ValueError(f"item {item.key!r}: local {str(item.local)!r} is not absolute")


async def _call(fn: Callable[..., T], *args: Any, abandon: bool = False) -> T:
    return await anyio.to_thread.run_sync(lambda: fn(*args), abandon_on_cancel=abandon)


def _submit(client: TransferClient, data: TransferData) -> str:
    data["submission_id"] = client.get_submission_id()["value"]
    return str(client.submit_transfer(data)["task_id"])


def _get(client: TransferClient, task_id: str) -> dict[str, Any]:
    return dict(client.get_task(task_id).data)


async def _cancel(client: TransferClient, task_id: str) -> None:
    try:
        await _call(client.cancel_task, task_id)
    except GlobusError as exc:  # it ended meanwhile, or Globus is away: the deadline holds
        log.warning("Globus task %s could not be cancelled: %s", task_id, said(exc))


def _skipped(client: TransferClient, task_id: str, task: dict[str, Any]) -> list[dict[str, Any]]:
    if task.get("subtasks_skipped_errors") == 0:
        return []
    return [dict(s) for s in client.paginated.task_skipped_errors(task_id).items()]

"""What a transfer provider (``rsync``, ``globus``) is given and gives back: the items of
one call, each item's outcome and the call's, and where a location's prefix puts the
path of a job's transfer slot.

A provider never raises for a transfer failure: its :class:`BatchResult` tells, item by
item, what arrived, what is missing (a source that does not exist yet) and why the rest
did not arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from balsam_mq.errors import JobError


@dataclass(frozen=True)
class Item:
    key: Hashable  # the caller's handle (e.g. (job_id, slot)), returned in the result
    remote: PurePosixPath  # absolute path on the remote host
    local: Path  # absolute local path (a file, or a directory when recursive)
    recursive: bool


@dataclass(frozen=True)
class ItemResult:
    key: Hashable
    done: bool  # arrived complete
    missing: bool  # the source does not exist (yet): the caller waits and retries later
    bytes: int  # bytes moved (the file's size, or the tree's total for a directory)
    error: str | None  # why not done (the provider's message for it, or the batch's failure)


@dataclass(frozen=True)
class BatchResult:
    task_id: str  # identifies the batch in messages, e.g. "rsync-3f2a9c0d1e4b"
    items: list[ItemResult]  # one per item, in the order given
    started_at: datetime
    finished_at: datetime
    returncode: int | None  # None when rsync did not run
    processes: int  # rsync processes this call started: 1, or 0 when nothing could be sent


def done(item: Item, size: int) -> ItemResult:
    return ItemResult(item.key, done=True, missing=False, bytes=size, error=None)


def missing(item: Item) -> ItemResult:
    return ItemResult(item.key, done=False, missing=True, bytes=0, error=None)


def failed(item: Item, error: str) -> ItemResult:
    return ItemResult(item.key, done=False, missing=False, bytes=0, error=error)


def url_prefix(url_path: str, bad: Callable[[str], Exception]) -> str:
    """The prefix a location URI's path names (``/`` if none); ``bad(reason)`` is raised
    for ``..`` or a NUL in it."""
    path = unquote(url_path)
    segments = [s for s in path.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise bad("the prefix may not contain '..'")
    if "\0" in path:
        raise bad("the prefix contains a NUL character")
    return "/" + "/".join(segments)


def below_prefix(prefix: str, path: str, label: str) -> PurePosixPath:
    """The absolute ``path`` of a job's transfer slot below a location's ``prefix``: ``/a/b``
    under ``/data`` is ``/data/a/b``; a relative path or a ``..`` leaving the prefix is a
    :class:`JobError` naming the location (``label``)."""
    if not path.startswith("/") or "\0" in path:
        raise JobError(f"{path!r} is not an absolute path (location {label})")
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if not kept:
                raise JobError(f"{path!r} escapes the prefix {prefix!r} of {label} with '..'")
            kept.pop()
        elif segment not in ("", "."):
            kept.append(segment)
    return PurePosixPath(prefix, *kept)

"""Stage-in and stage-out of transfer slots: planning them from the site's locations, and
moving a batch of them, grouped so that each pair of places costs one transfer.

A job fills a slot with ``alias:/absolute/path``; the site's ``transfers.locations``
maps the alias to a URI:

* ``local`` (this filesystem) or ``local:/prefix`` (paths are taken below the prefix):
  copied file by file;
* ``rsync://[user@]host[:port][/prefix]`` (or ``ssh://``): rsync over SSH with the site
  user's keys (``transfers.ssh_command``); all the slots of a batch of jobs that move
  between this site and one location, in one direction, go in one rsync
  (``--files-from``);
* ``globus://<endpoint-uuid>[/prefix]``: Globus, between the location's endpoint and
  the site's (``transfers.globus_endpoint``), one transfer task for a batch's slots of
  one location and direction, with the tokens of ``balsam-mq site globus-login``.

:func:`move` never raises for a transfer that fails: each slot's outcome says whether
it arrived, is missing (its source does not exist yet), or failed and why.
"""

from __future__ import annotations

import shutil
import uuid
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Literal

import anyio

import balsam_mq.processors.globus as globus
from balsam_mq.domain import App, Job, utcnow
from balsam_mq.errors import BalsamError, ConfigError, JobError
from balsam_mq.processors.batches import BatchResult, Item
from balsam_mq.processors.rsync import RsyncLocation, pull, push
from balsam_mq.site.config import TransferSettings

Direction = Literal["in", "out"]
SSH_SCHEMES = ("rsync", "ssh")


@dataclass(frozen=True)
class Transfer:
    """One slot of one job to move: ``remote`` is the path at the location (on this
    filesystem for ``local``), ``local`` the path in the job's workdir."""

    job_id: int
    slot: str
    direction: Direction
    location: str  # the alias
    uri: str  # the alias's URI in settings.yml
    remote: PurePosixPath
    local: Path
    recursive: bool

    @property
    def key(self) -> tuple[int, str]:
        return (self.job_id, self.slot)

    @property
    def protocol(self) -> str:
        """``local``, ``rsync`` or ``globus``."""
        scheme = self.uri.partition(":")[0]
        return "rsync" if scheme in SSH_SCHEMES else scheme


@dataclass(frozen=True)
class Outcome:
    """What became of one transfer in one attempt."""

    done: bool
    missing: bool  # its source does not exist (yet)
    bytes: int
    error: str | None
    task_id: str  # the batch it moved in
    started_at: datetime
    finished_at: datetime


def plan(
    app: App, job: Job, direction: Direction, locations: dict[str, str], workdir: Path
) -> list[Transfer]:
    """The transfers of ``job`` in ``direction``; a bad URI or alias is a :class:`JobError`."""
    assert job.id is not None
    out: list[Transfer] = []
    for slot_name, slot in app.transfers.items():
        if slot.direction != direction or slot_name not in job.transfers:
            continue
        value = job.transfers[slot_name]
        alias, sep, path = value.partition(":")
        where = f"Job {job.id}: transfer {slot_name!r}"
        if not sep or not path.startswith("/"):
            raise JobError(f"{where}: {value!r} is not alias:/absolute/path")
        if alias not in locations:
            known = ", ".join(sorted(locations)) or "none"
            raise JobError(
                f"{where}: unknown location alias {alias!r} "
                f"(settings.yml transfers.locations has: {known})"
            )
        uri = locations[alias]
        scheme, _, rest = uri.partition(":")
        if scheme == "local":
            remote = PurePosixPath(rest + path) if rest.startswith("/") else PurePosixPath(path)
        elif scheme in SSH_SCHEMES:
            remote = RsyncLocation.parse(uri).remote(path)
        elif scheme == "globus":
            remote = globus.GlobusLocation.parse(uri).remote(path)
        else:
            raise JobError(
                f"{where}: protocol {scheme!r} of location {alias!r} is not available in "
                "this installation"
            )
        local = workdir / slot.local_path
        if slot.local_path in (".", "./") and direction == "in":
            local = workdir / remote.name
        out.append(
            Transfer(job.id, slot_name, direction, alias, uri, remote, local, slot.recursive)
        )
    return out


async def move(
    transfers: Sequence[Transfer],
    *,
    settings: TransferSettings,
    staging: Path,
    globus_tokens: Path,
) -> dict[tuple[int, str], Outcome]:
    """Move every transfer, the groups of each location and direction at once: one rsync
    or one Globus task per group, a copy each for local ones. The outcome of each, by
    (job id, slot). ``settings``: the site's ``transfers``."""
    groups: dict[tuple[str, Direction], list[Transfer]] = defaultdict(list)
    for t in transfers:
        groups[(t.uri, t.direction)].append(t)
    outcomes: dict[tuple[int, str], Outcome] = {}

    async def one_group(uri: str, direction: Direction, group: list[Transfer]) -> None:
        protocol = group[0].protocol
        if protocol == "local":
            task_id = f"local-{uuid.uuid4().hex[:12]}"
            for t in group:
                outcomes[t.key] = await anyio.to_thread.run_sync(_copy, t, task_id)
            return
        items = [Item(t.key, t.remote, t.local, t.recursive) for t in group]
        if protocol == "rsync":
            run = pull if direction == "in" else push
            batch = await run(
                RsyncLocation.parse(uri),
                items,
                ssh_command=settings.ssh_command,
                staging=staging,
                timeout_s=settings.timeout_s,
            )
        else:
            if settings.globus_endpoint is None or settings.globus_client_id is None:
                raise ConfigError(
                    "globus:// locations need transfers.globus_endpoint and "
                    "transfers.globus_client_id"
                )  # settings.yml refuses it first
            move_globus = globus.pull if direction == "in" else globus.push
            batch = await move_globus(
                globus.GlobusLocation.parse(uri),
                items,
                site_endpoint=settings.globus_endpoint,
                tokens=globus_tokens,
                client_id=settings.globus_client_id,
                timeout_s=settings.timeout_s,
            )
        outcomes.update(_outcomes(batch))

    async with anyio.create_task_group() as tg:
        for (uri, direction), group in groups.items():
            tg.start_soon(one_group, uri, direction, group)
    return outcomes


def _outcomes(batch: BatchResult) -> dict[tuple[int, str], Outcome]:
    return {
        _key(result.key): Outcome(
            done=result.done,
            missing=result.missing,
            bytes=result.bytes,
            error=result.error,
            task_id=batch.task_id,
            started_at=batch.started_at,
            finished_at=batch.finished_at,
        )
        for result in batch.items
    }


def _key(key: Hashable) -> tuple[int, str]:
    assert isinstance(key, tuple)
    job_id, slot = key
    return int(job_id), str(slot)


def _copy(t: Transfer, task_id: str) -> Outcome:
    """A local transfer: a file, or with ``recursive`` a directory tree."""
    started = utcnow()
    remote = Path(t.remote)
    src, dst = (remote, t.local) if t.direction == "in" else (t.local, remote)
    present = src.is_dir() if t.recursive else src.is_file()
    if not present:
        return Outcome(False, True, 0, None, task_id, started, utcnow())
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if t.recursive:
            shutil.copytree(src, dst, dirs_exist_ok=True)
            size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
        else:
            shutil.copy2(src, dst)
            size = dst.stat().st_size
    except (OSError, BalsamError) as exc:
        return Outcome(False, False, 0, f"{src} -> {dst}: {exc}", task_id, started, utcnow())
    return Outcome(True, False, size, None, task_id, started, utcnow())

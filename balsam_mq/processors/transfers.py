"""Stage-in and stage-out of transfer slots: URI resolution and the protocols behind them.

A job fills a slot with ``alias:/absolute/path``; the site's ``transfers.locations``
maps the alias to a protocol URI: ``local`` (this filesystem) or ``local:/prefix``
(paths are taken below the prefix), ``globus://<endpoint>`` (plugs in behind
:class:`Protocol`; not available in this installation).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from balsam_mq.domain import App, Job
from balsam_mq.errors import JobError


@dataclass(frozen=True)
class Transfer:
    slot: str
    direction: Literal["in", "out"]
    remote: Path
    local: Path  # inside the workdir
    recursive: bool

    @property
    def source(self) -> Path:
        return self.remote if self.direction == "in" else self.local

    @property
    def destination(self) -> Path:
        return self.local if self.direction == "in" else self.remote


class TransferProtocol(Protocol):
    def available(self, transfer: Transfer) -> bool:
        """Whether the source exists yet (data-triggered jobs wait until it does)."""
        ...

    def run(self, transfer: Transfer) -> None: ...


class LocalProtocol:
    """Copies on this filesystem: a file, or with ``recursive`` a directory tree."""

    def available(self, transfer: Transfer) -> bool:
        src = transfer.source
        return src.is_dir() if transfer.recursive else src.is_file()

    def run(self, transfer: Transfer) -> None:
        src, dst = transfer.source, transfer.destination
        dst.parent.mkdir(parents=True, exist_ok=True)
        if transfer.recursive:
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)


PROTOCOLS: dict[str, TransferProtocol] = {"local": LocalProtocol()}


def plan(
    app: App, job: Job, direction: Literal["in", "out"], locations: dict[str, str], workdir: Path
) -> list[tuple[TransferProtocol, Transfer]]:
    """The transfers of ``job`` in ``direction``; a bad URI or alias is a :class:`JobError`."""
    out: list[tuple[TransferProtocol, Transfer]] = []
    for slot_name, slot in app.transfers.items():
        if slot.direction != direction or slot_name not in job.transfers:
            continue
        uri = job.transfers[slot_name]
        alias, sep, path = uri.partition(":")
        if not sep or not path.startswith("/"):
            raise JobError(
                f"Job {job.id}: transfer {slot_name!r}: {uri!r} is not alias:/absolute/path"
            )
        if alias not in locations:
            known = ", ".join(sorted(locations)) or "none"
            raise JobError(
                f"Job {job.id}: transfer {slot_name!r}: unknown location alias {alias!r} "
                f"(settings.yml transfers.locations has: {known})"
            )
        protocol_name, _, prefix = locations[alias].partition(":")
        protocol = PROTOCOLS.get(protocol_name)
        if protocol is None:
            raise JobError(
                f"Job {job.id}: transfer {slot_name!r}: protocol {protocol_name!r} of location "
                f"{alias!r} is not available in this installation"
            )
        remote = Path(prefix + path) if prefix.startswith("/") else Path(path)
        local = workdir / slot.local_path
        if slot.local_path in (".", "./") and direction == "in":
            local = workdir / remote.name
        out.append((protocol, Transfer(slot_name, direction, remote, local, slot.recursive)))
    return out

"""Batched rsync over SSH: one rsync process moves every item of a call, through a staging tree.

The promise: :func:`pull` and :func:`push` start exactly one rsync for all their items
(``--files-from``, never one process per file), and never raise for a transfer failure:
the :class:`BatchResult` tells, item by item, what arrived, what is missing (a source that
does not exist yet) and why the rest did not arrive. They raise only for programming errors
(a relative path, an item on ``/``) and for a malformed ``ssh_command``
(:class:`~balsam_mq.errors.ConfigError`).

Both directions go through a staging tree that mirrors the remote layout below ``/``
(``--files-from`` implies ``--relative``), in a subdirectory of ``staging`` of the call's
own, removed at the end whatever happened:

- pull: ``rsync host:/ STAGING/`` then each arrived path is moved to ``item.local`` (a
  rename on one filesystem, a copy placed by rename across devices), so nothing half
  transferred ever lands there;
- push: hard links of each ``item.local`` (copies across devices) are laid out in the
  staging tree, then ``rsync STAGING/ host:/``.

Symbolic links inside trees travel as links (``rsync -a``), and so does a pulled path
that is one; a pushed output that is a link sends what it points to.

``--no-implied-dirs`` keeps the parents of the listed paths out of the transfer: missing
ones are created with default attributes, existing ones (``/tmp``, a home directory) are
left as they are.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import shutil
import stat
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread

from balsam_mq.errors import ConfigError
from balsam_mq.processors import placing
from balsam_mq.processors.batches import (
    BatchResult,
    Item,
    ItemResult,
    below_prefix,
    done,
    failed,
    missing,
    url_prefix,
)
from balsam_mq.processors.rsync_process import Run, run_rsync

SCHEMES = ("rsync", "ssh")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")  # a host or user name, never an ssh option


@dataclass(frozen=True)
class RsyncLocation:
    """``rsync://[user@]host[:port][/prefix]`` (or ``ssh://`` the same way)."""

    user: str | None
    host: str
    port: int | None
    prefix: str  # absolute POSIX path on the remote host ("/" if none)

    @classmethod
    def parse(cls, uri: str) -> RsyncLocation:
        def bad(what: str) -> ConfigError:
            return ConfigError(
                f"transfer location {uri!r}: {what} (expected rsync://[user@]host[:port][/prefix])"
            )

        try:
            parts = urlsplit(uri)
        except ValueError as exc:
            raise bad(str(exc)) from None
        if parts.scheme not in SCHEMES:
            raise bad(f"the scheme is {parts.scheme or 'missing'!r}, not rsync:// or ssh://")
        if parts.query or parts.fragment:
            raise bad("a query or fragment is not allowed")
        if parts.password is not None:
            raise bad("a password is not allowed (ssh keys only)")
        host = parts.hostname
        if not host:
            raise bad("the host is missing")
        if not (_NAME.fullmatch(host) or _is_ipv6(host)):
            raise bad(f"{host!r} is not a host name or address")
        user = parts.username
        if user is not None and not _NAME.fullmatch(unquote(user)):
            raise bad(f"{user!r} is not a user name")
        try:
            port = parts.port
        except ValueError:
            raise bad("the port is not a number in 1-65535") from None
        if port == 0:
            raise bad("the port is not a number in 1-65535")
        return cls(unquote(user) if user else None, host, port, url_prefix(parts.path, bad))

    def remote(self, path: str) -> PurePosixPath:
        """``path`` (absolute) below the prefix: ``/a/b`` under ``/data`` is ``/data/a/b``."""
        return below_prefix(self.prefix, path, self.label())

    def label(self) -> str:
        """``user@host:port`` (the parts given) for messages."""
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{self._host()}{port}"

    def spec(self) -> str:
        """The remote root as rsync spells it: ``[user@]host:/``."""
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self._host()}:/"

    def _host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _ssh_argv(location: RsyncLocation, ssh_command: str) -> list[str]:
    """``ssh_command`` split, with the location's ``-p PORT`` and ``-o BatchMode=yes``."""
    try:
        argv = shlex.split(ssh_command)
    except ValueError as exc:
        raise ConfigError(f"ssh command {ssh_command!r}: {exc}") from None
    if not argv:
        raise ConfigError(f"ssh command for {location.label()} is empty")
    if location.port:
        argv += ["-p", str(location.port)]
    return [*argv, "-o", "BatchMode=yes"]


def _rsync_argv(rsync: str, ssh: str, files: Path, *extra: str) -> list[str]:
    # -r explicitly: --files-from turns off the recursion -a implies
    common = ["-a", "-r", "--from0", f"--files-from={files}", "--no-implied-dirs"]
    return [rsync, *common, *extra, "-e", ssh, "--"]


async def pull(
    location: RsyncLocation,
    items: Sequence[Item],
    *,
    ssh_command: str = "ssh",
    staging: Path,
    timeout_s: float = 3600,
) -> BatchResult:
    """Fetch every item's ``remote`` to its ``local`` with one rsync; absent sources are
    ``missing``. ``staging`` should be on the filesystem of the destinations (renames)."""
    return await _batch("pull", location, items, ssh_command, staging, timeout_s)


async def push(
    location: RsyncLocation,
    items: Sequence[Item],
    *,
    ssh_command: str = "ssh",
    staging: Path,
    timeout_s: float = 3600,
) -> BatchResult:
    """Send every item's ``local`` to its ``remote`` with one rsync; a missing output is that
    item's error and the others are still sent. ``staging`` should be on the filesystem of
    the sources (hard links)."""
    return await _batch("push", location, items, ssh_command, staging, timeout_s)


async def _batch(
    direction: Literal["pull", "push"],
    location: RsyncLocation,
    items: Sequence[Item],
    ssh_command: str,
    staging: Path,
    timeout_s: float,
) -> BatchResult:
    _check(items, timeout_s)
    task_id = f"rsync-{uuid.uuid4().hex[:12]}"
    started_at = datetime.now(UTC)

    def finish(results: list[ItemResult], run: Run | None) -> BatchResult:
        code, processes = (run.returncode, int(run.started)) if run else (None, 0)
        return BatchResult(task_id, results, started_at, datetime.now(UTC), code, processes)

    if not items:
        return finish([], None)
    rsync = shutil.which("rsync")
    if rsync is None:
        problem = "rsync is not installed on this host (not found on PATH)"
        return finish([failed(item, problem) for item in items], None)
    ssh = shlex.join(_ssh_argv(location, ssh_command))  # a malformed one raises before any I/O
    root = staging / task_id
    tree, files = root / "tree", root / "files"
    label = location.label()
    try:
        if direction == "pull":
            await anyio.to_thread.run_sync(_prepare_pull, items, tree, files)
            argv = _rsync_argv(rsync, ssh, files, "--ignore-missing-args")
            run = await run_rsync([*argv, location.spec(), f"{tree}/"], timeout_s, label)
            results = await anyio.to_thread.run_sync(_place_pulled, items, tree, run, task_id)
            return finish(results, run)
        staged = await anyio.to_thread.run_sync(_stage_push, items, tree, files, task_id)
        if all(isinstance(s, str) for s in staged):
            return finish([failed(i, str(s)) for i, s in zip(items, staged, strict=True)], None)
        argv = _rsync_argv(rsync, ssh, files)
        run = await run_rsync([*argv, f"{tree}/", location.spec()], timeout_s, label)
        return finish(_pushed(items, staged, tree, run), run)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(placing.remove, root)


def _check(items: Sequence[Item], timeout_s: float) -> None:
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, not {timeout_s}")
    for item in items:
        remote = item.remote
        if not remote.is_absolute() or remote == PurePosixPath("/") or ".." in remote.parts:
            raise ValueError(f"item {item.key!r}: remote {str(remote)!r} is not a path below /")
        if not item.local.is_absolute():
            raise ValueError(f"item {item.key!r}: local {str(item.local)!r} is not absolute")


def _relative(remote: PurePosixPath) -> str:
    return str(remote.relative_to("/"))


def _write_list(files: Path, remotes: Sequence[PurePosixPath]) -> None:
    names = dict.fromkeys(_relative(r) for r in remotes)
    files.write_bytes(b"".join(os.fsencode(name) + b"\0" for name in names))


def _prepare_pull(items: Sequence[Item], tree: Path, files: Path) -> None:
    tree.mkdir(parents=True)
    _write_list(files, [item.remote for item in items])


def _place_pulled(items: Sequence[Item], tree: Path, run: Run, tag: str) -> list[ItemResult]:
    shared = _overlapping([item.remote for item in items])
    results = []
    for index, item in enumerate(items):
        staged = tree / _relative(item.remote)
        mode = placing.mode_of(staged)
        if mode is not None and item.recursive != stat.S_ISDIR(mode):
            results.append(
                failed(item, placing.wrong_kind(f"remote {item.remote}", item.recursive))
            )
        elif (told := run.about(item, tree)) is not None:
            results.append(failed(item, told))
        elif mode is None:
            results.append(missing(item) if run.complete else failed(item, str(run.problem)))
        elif item.recursive and not run.complete:  # the tree may be incomplete
            results.append(failed(item, str(run.problem)))
        else:
            size = placing.size_of(staged)
            try:
                placing.place(staged, item.local, keep=index in shared, tag=tag)
            except OSError as exc:
                results.append(failed(item, f"cannot place {item.remote} at {item.local}: {exc}"))
                continue
            results.append(done(item, size))
    return results


def _overlapping(remotes: Sequence[PurePosixPath]) -> set[int]:
    """Indexes of the paths equal to, inside or above another one of ``remotes``."""
    counts: dict[PurePosixPath, int] = {}
    above: set[PurePosixPath] = set()
    for remote in remotes:
        counts[remote] = counts.get(remote, 0) + 1
        above.update(remote.parents)
    return {
        index
        for index, remote in enumerate(remotes)
        if counts[remote] > 1 or remote in above or any(p in counts for p in remote.parents)
    }


def _stage_push(items: Sequence[Item], tree: Path, files: Path, tag: str) -> list[int | str]:
    """Link each item's output into ``tree``: its size, or why it is not sent."""
    tree.mkdir(parents=True)
    out: list[int | str] = []
    taken: set[PurePosixPath] = set()
    above: set[PurePosixPath] = set()
    for item in items:
        remote, local = item.remote, item.local
        mode = placing.mode_of(local, follow=True)  # an output that is a symlink sends its target
        if remote in taken or remote in above or any(p in taken for p in remote.parents):
            out.append(f"remote {remote} overlaps another item's destination in {tag}")
        elif mode is None:
            out.append(f"output {local} is missing")
        elif item.recursive != stat.S_ISDIR(mode):
            out.append(placing.wrong_kind(f"output {local}", item.recursive))
        else:
            staged = tree / _relative(remote)
            try:
                staged.parent.mkdir(parents=True, exist_ok=True)
                if item.recursive:
                    placing.link_tree(local.resolve(), staged)
                else:
                    placing.link(local.resolve(), staged)
            except OSError as exc:
                placing.remove(staged)
                out.append(f"output {local} cannot be staged: {exc}")
                continue
            out.append(placing.size_of(local))
            taken.add(remote)
            above.update(remote.parents)
    _write_list(files, [i.remote for i, s in zip(items, out, strict=True) if isinstance(s, int)])
    return out


def _pushed(
    items: Sequence[Item], staged: list[int | str], tree: Path, run: Run
) -> list[ItemResult]:
    results = []
    for item, outcome in zip(items, staged, strict=True):
        if isinstance(outcome, str):
            results.append(failed(item, outcome))
        elif (told := run.about(item, tree)) is not None:
            results.append(failed(item, told))
        elif run.complete:
            results.append(done(item, outcome))
        else:  # what reached the remote before the failure cannot be told apart
            results.append(failed(item, str(run.problem)))
    return results

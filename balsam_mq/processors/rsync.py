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

import errno
import ipaddress
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread

from balsam_mq.errors import ConfigError, JobError

SCHEMES = ("rsync", "ssh")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")  # a host or user name, never an ssh option
STDERR_LIMIT = 64 * 1024  # bytes of rsync's stderr kept (the end matters)
MESSAGE_LINES = 4
DRAIN_GRACE_S = 5.0
PARTIAL = (23, 24)  # some files were not transferred / vanished: the rest arrived
EXIT_MEANINGS = {
    5: "could not start the rsync protocol",
    10: "socket I/O error",
    12: "rsync protocol stream error",
    14: "could not run the ssh command",
    20: "killed by a signal",
    23: "partial transfer",
    24: "some source files vanished",
    30: "I/O timeout",
    255: "ssh connection failed",
}
_QUOTED = re.compile(r'"([^"]*)"')


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


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


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
    error: str | None  # why not done (rsync's message for it, or the batch's failure)


@dataclass(frozen=True)
class BatchResult:
    task_id: str  # identifies the batch in messages, e.g. "rsync-3f2a9c0d1e4b"
    items: list[ItemResult]  # one per item, in the order given
    started_at: datetime
    finished_at: datetime
    returncode: int | None  # None when rsync did not run
    processes: int  # rsync processes this call started: 1, or 0 when nothing could be sent


def _done(item: Item, size: int) -> ItemResult:
    return ItemResult(item.key, done=True, missing=False, bytes=size, error=None)


def _missing(item: Item) -> ItemResult:
    return ItemResult(item.key, done=False, missing=True, bytes=0, error=None)


def _failed(item: Item, error: str) -> ItemResult:
    return ItemResult(item.key, done=False, missing=False, bytes=0, error=error)


@dataclass(frozen=True)
class _Run:
    """How the one rsync process ended."""

    started: bool
    returncode: int | None
    problem: str | None  # the batch's failure in one line; None when rsync exited 0
    stderr: list[str]

    @property
    def complete(self) -> bool:
        """Whatever is not named in an error arrived whole (exit 0, 23 or 24)."""
        return self.returncode == 0 or self.returncode in PARTIAL

    def about(self, item: Item, tree: Path) -> str | None:
        """rsync's error lines naming the item's path, one of its parents, or (recursive)
        a path below it."""
        lines = [line for line in self.stderr if _names(line, item, tree)]
        return "; ".join(lines[-MESSAGE_LINES:])[-500:] if lines else None


def _names(line: str, item: Item, tree: Path) -> bool:
    if not line.startswith("rsync:"):
        return False
    remote = item.remote
    for quoted in _QUOTED.findall(line):
        if quoted.startswith(f"{tree}/"):
            quoted = quoted[len(str(tree)) :]
        path = PurePosixPath("/", quoted)
        if path == PurePosixPath("/"):
            continue
        if (
            path == remote
            or path in remote.parents
            or (item.recursive and remote in path.parents)
            or (path.parent == remote.parent and path.name.startswith(f".{remote.name}."))
        ):
            return True
    return False


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


async def _run(argv: list[str], timeout_s: float, label: str) -> _Run:
    """Run rsync in its own process group; the group is killed on timeout or cancellation."""
    try:
        process = await anyio.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return _Run(False, None, f"rsync could not be started: {exc}", [])
    err = bytearray()
    drained = anyio.Event()

    async def drain() -> None:
        assert process.stderr is not None
        async for chunk in process.stderr:
            err.extend(chunk)
            del err[:-STDERR_LIMIT]
        drained.set()

    timed_out = False
    async with process:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain)
                with anyio.move_on_after(timeout_s) as waiting:
                    await process.wait()
                if waiting.cancelled_caught:
                    timed_out = True
                    _kill_group(process.pid)
                    await process.wait()
                # stderr ends with rsync's group; something that left it must not hold us
                with anyio.move_on_after(DRAIN_GRACE_S):
                    await drained.wait()
                tg.cancel_scope.cancel()
        finally:
            if process.returncode is None:
                _kill_group(process.pid)
                with anyio.CancelScope(shield=True):
                    await process.wait()
    lines = _meaningful(err.decode(errors="replace"))
    tail = _tail(lines)
    code = process.returncode
    if code == 0 and not timed_out:
        return _Run(True, code, None, lines)
    if timed_out:
        problem = f"rsync with {label} timed out after {timeout_s:g} s and was killed"
    else:
        meaning = EXIT_MEANINGS.get(code or 0)
        problem = f"rsync with {label} failed (exit {code}{', ' + meaning if meaning else ''})"
    return _Run(True, code, f"{problem}: {tail}" if tail else problem, lines)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _meaningful(stderr: str) -> list[str]:
    lines = (line.strip() for line in stderr.splitlines())
    return [line for line in lines if line and not line.startswith("Warning: Permanently added")]


def _tail(lines: list[str]) -> str:
    """The last lines worth reading: ssh's own (connection, authentication) first, then
    rsync's, without its closing ``rsync error: ... (code N) at io.c(...)`` when others say
    more."""
    said = [line for line in lines if not line.startswith("rsync error:")] or lines
    ssh = [line for line in said if not line.startswith("rsync")][-2:]
    rest = [line for line in said if line.startswith("rsync")]
    kept = ssh + (rest[-(MESSAGE_LINES - len(ssh)) :] if len(ssh) < MESSAGE_LINES else [])
    return "; ".join(kept)[-500:]


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

    def finish(results: list[ItemResult], run: _Run | None) -> BatchResult:
        code, processes = (run.returncode, int(run.started)) if run else (None, 0)
        return BatchResult(task_id, results, started_at, datetime.now(UTC), code, processes)

    if not items:
        return finish([], None)
    rsync = shutil.which("rsync")
    if rsync is None:
        problem = "rsync is not installed on this host (not found on PATH)"
        return finish([_failed(item, problem) for item in items], None)
    ssh = shlex.join(_ssh_argv(location, ssh_command))  # a malformed one raises before any I/O
    root = staging / task_id
    tree, files = root / "tree", root / "files"
    label = location.label()
    try:
        if direction == "pull":
            await anyio.to_thread.run_sync(_prepare_pull, items, tree, files)
            argv = _rsync_argv(rsync, ssh, files, "--ignore-missing-args")
            run = await _run([*argv, location.spec(), f"{tree}/"], timeout_s, label)
            results = await anyio.to_thread.run_sync(_place_pulled, items, tree, run, task_id)
            return finish(results, run)
        staged = await anyio.to_thread.run_sync(_stage_push, items, tree, files, task_id)
        if all(isinstance(s, str) for s in staged):
            return finish([_failed(i, str(s)) for i, s in zip(items, staged, strict=True)], None)
        argv = _rsync_argv(rsync, ssh, files)
        run = await _run([*argv, f"{tree}/", location.spec()], timeout_s, label)
        return finish(_pushed(items, staged, tree, run), run)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_remove, root)


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


def _place_pulled(items: Sequence[Item], tree: Path, run: _Run, tag: str) -> list[ItemResult]:
    shared = _overlapping([item.remote for item in items])
    results = []
    for index, item in enumerate(items):
        staged = tree / _relative(item.remote)
        mode = _mode(staged)
        if mode is not None and item.recursive != stat.S_ISDIR(mode):
            results.append(_failed(item, _wrong_kind(f"remote {item.remote}", item.recursive)))
        elif (told := run.about(item, tree)) is not None:
            results.append(_failed(item, told))
        elif mode is None:
            results.append(_missing(item) if run.complete else _failed(item, str(run.problem)))
        elif item.recursive and not run.complete:  # the tree may be incomplete
            results.append(_failed(item, str(run.problem)))
        else:
            size = _size(staged)
            try:
                _place(staged, item.local, keep=index in shared, tag=tag)
            except OSError as exc:
                results.append(_failed(item, f"cannot place {item.remote} at {item.local}: {exc}"))
                continue
            results.append(_done(item, size))
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
        mode = _mode(local, follow=True)  # an output that is a symlink sends its target
        if remote in taken or remote in above or any(p in taken for p in remote.parents):
            out.append(f"remote {remote} overlaps another item's destination in {tag}")
        elif mode is None:
            out.append(f"output {local} is missing")
        elif item.recursive != stat.S_ISDIR(mode):
            out.append(_wrong_kind(f"output {local}", item.recursive))
        else:
            staged = tree / _relative(remote)
            try:
                staged.parent.mkdir(parents=True, exist_ok=True)
                if item.recursive:
                    _link_tree(local.resolve(), staged)
                else:
                    _link(local.resolve(), staged)
            except OSError as exc:
                _remove(staged)
                out.append(f"output {local} cannot be staged: {exc}")
                continue
            out.append(_size(local))
            taken.add(remote)
            above.update(remote.parents)
    _write_list(files, [i.remote for i, s in zip(items, out, strict=True) if isinstance(s, int)])
    return out


def _pushed(
    items: Sequence[Item], staged: list[int | str], tree: Path, run: _Run
) -> list[ItemResult]:
    results = []
    for item, outcome in zip(items, staged, strict=True):
        if isinstance(outcome, str):
            results.append(_failed(item, outcome))
        elif (told := run.about(item, tree)) is not None:
            results.append(_failed(item, told))
        elif run.complete:
            results.append(_done(item, outcome))
        else:  # what reached the remote before the failure cannot be told apart
            results.append(_failed(item, str(run.problem)))
    return results


def _wrong_kind(what: str, recursive: bool) -> str:
    if recursive:
        return f"{what} is not a directory (the transfer is recursive)"
    return f"{what} is a directory (the transfer is not recursive)"


def _mode(path: Path, *, follow: bool = False) -> int | None:
    try:
        return path.stat(follow_symlinks=follow).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None


def _size(path: Path) -> int:
    """A file's size, or the total of the regular files of a tree."""
    if not _is_dir(path):
        return path.stat(follow_symlinks=False).st_size
    total = 0
    for top, _dirs, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(top, name))
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def _link(src: Path, dst: Path) -> None:
    """A hard link of ``src`` at ``dst``, or a copy where links fail (another filesystem)."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _link_tree(src: Path, dst: Path) -> None:
    """``src``'s tree at ``dst``: directories made, files linked one by one."""
    dst.mkdir()
    made = [(src, dst)]
    for top, dirs, names in os.walk(src, onerror=_reraise):  # an unreadable directory fails
        here = dst / os.path.relpath(top, src)
        for name in dirs:
            if os.path.islink(os.path.join(top, name)):  # os.walk does not descend into it
                _link(Path(top, name), here / name)
            else:
                (here / name).mkdir()
                made.append((Path(top, name), here / name))
        for name in names:
            _link(Path(top, name), here / name)
    for source, copy in reversed(made):  # modes and times, after the entries are in
        shutil.copystat(source, copy, follow_symlinks=False)


def _reraise(exc: OSError) -> None:
    raise exc


def _place(src: Path, dst: Path, *, keep: bool, tag: str) -> None:
    """Put ``src`` at ``dst`` (merging into a directory there, or one it links to): renamed,
    or with ``keep`` or across devices copied beside ``dst`` and renamed into place."""
    if _is_dir(src) and dst.is_dir():
        for child in os.scandir(src):
            _place(Path(child.path), dst / child.name, keep=keep, tag=tag)
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not keep:
        try:
            os.replace(src, dst)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
    part = dst.with_name(f".{dst.name}.{tag}.part")
    try:
        if _is_dir(src):
            shutil.copytree(src, part, symlinks=True)
        else:
            shutil.copy2(src, part, follow_symlinks=False)
        os.replace(part, dst)
    except BaseException:
        _remove(part)
        raise


def _is_dir(path: Path) -> bool:
    mode = _mode(path)
    return mode is not None and stat.S_ISDIR(mode)


def _remove(path: Path) -> None:
    """Remove a file or tree, making read-only directories writable first if need be."""
    if _mode(path) is None:
        return
    if not _is_dir(path):
        path.unlink()
        return
    try:
        shutil.rmtree(path)
    except OSError:
        os.chmod(path, 0o700)
        for top, dirs, _names in os.walk(path):
            for name in dirs:
                if not os.path.islink(child := os.path.join(top, name)):
                    os.chmod(child, 0o700)
        shutil.rmtree(path, ignore_errors=True)

"""Files put in place on this host for a transfer: hard links (copies across filesystems),
and renames that never leave a half-written file or tree where it is expected."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path


def wrong_kind(what: str, recursive: bool) -> str:
    if recursive:
        return f"{what} is not a directory (the transfer is recursive)"
    return f"{what} is a directory (the transfer is not recursive)"


def mode_of(path: Path, *, follow: bool = False) -> int | None:
    try:
        return path.stat(follow_symlinks=follow).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None


def size_of(path: Path) -> int:
    """A file's size, or the total of the regular files of a tree."""
    if not _is_dir(path):
        return path.stat(follow_symlinks=False).st_size
    total = 0
    for top, _dirs, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(top, name))
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def link(src: Path, dst: Path) -> None:
    """A hard link of ``src`` at ``dst``, or a copy where links fail (another filesystem)."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def link_tree(src: Path, dst: Path) -> None:
    """``src``'s tree at ``dst``: directories made, files linked one by one."""
    dst.mkdir()
    made = [(src, dst)]
    for top, dirs, names in os.walk(src, onerror=_reraise):  # an unreadable directory fails
        here = dst / os.path.relpath(top, src)
        for name in dirs:
            if os.path.islink(os.path.join(top, name)):  # os.walk does not descend into it
                link(Path(top, name), here / name)
            else:
                (here / name).mkdir()
                made.append((Path(top, name), here / name))
        for name in names:
            link(Path(top, name), here / name)
    for source, copy in reversed(made):  # modes and times, after the entries are in
        shutil.copystat(source, copy, follow_symlinks=False)


def _reraise(exc: OSError) -> None:
    raise exc


def place(src: Path, dst: Path, *, keep: bool, tag: str) -> None:
    """Put ``src`` at ``dst`` (merging into a directory there, or one it links to): renamed,
    or with ``keep`` or across devices copied beside ``dst`` and renamed into place."""
    if _is_dir(src) and dst.is_dir():
        for child in os.scandir(src):
            place(Path(child.path), dst / child.name, keep=keep, tag=tag)
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
        remove(part)
        raise


def _is_dir(path: Path) -> bool:
    mode = mode_of(path)
    return mode is not None and stat.S_ISDIR(mode)


def remove(path: Path) -> None:
    """Remove a file or tree, making read-only directories writable first if need be."""
    if mode_of(path) is None:
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

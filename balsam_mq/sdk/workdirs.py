"""Workdirs of new jobs against their site's ``data/`` on this machine: one that leads out of
it through a symlink is refused when the job is created, not left for the site to find.

Where the site's directory is not on this machine (a client on a laptop), only the text
of a workdir is checked (``fields.check_workdir``); the site checks it again where the
workdir is made (``site.directory.SiteDirectory.workdir``, ``launcher.prepare``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(slots=True)
class _Directory:
    """A directory below ``data/`` as the workdirs of one creation name it."""

    real: str  # where it leads, symlinks followed
    inside: bool  # whether that is inside data/
    exists: bool
    asked: int = 0  # names looked up in it one by one so far
    links: dict[str, str] | None = None  # once listed: where its symlinks lead


_LIST_AFTER = 32  # names looked up one by one in a directory before it is listed instead


class DataDirectory:
    """One site's ``data/`` directory, read as the workdirs of one creation need it: each
    directory on their way is resolved once, nothing below a directory that does not
    exist is looked at, and a directory many workdirs end in is listed once instead of
    looking at each of them (a bulk creation's jobs mostly share their parent).

    Example::

        data = DataDirectory.on_this_machine(site.path)
        if data is not None and (problem := data.escape("out/1")) is not None:
            raise JobError(f"Job 'out/1': {problem}")
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.root = os.path.realpath(path)
        self._prefix = self.root.rstrip(os.sep) + os.sep
        self._dirs: dict[str, _Directory] = {"": _Directory(self.root, True, exists=True)}

    @classmethod
    def on_this_machine(cls, site_path: str) -> DataDirectory | None:
        """The ``data/`` directory of a site whose directory is ``site_path``, if it is a
        directory on this machine."""
        if not site_path:
            return None
        path = os.path.join(site_path, "data")
        return cls(path) if os.path.isdir(path) else None

    def escape(self, workdir: str) -> str | None:
        """How ``workdir`` (relative, without ``..``: ``fields.check_workdir``) leads out of
        ``data/`` through a symlink, for a message; ``None`` if it stays inside."""
        relative = workdir
        if "." in workdir or "//" in workdir or workdir.endswith("/"):
            relative = os.path.normpath(workdir)
            if relative == ".":
                return None
        parent, _, name = relative.rpartition("/")
        directory = self._dirs.get(parent) or self._directory(parent)
        links = directory.links
        if not directory.exists:  # nothing below it exists: it leads where it does
            inside = directory.inside
        elif links is None:  # not listed (yet): looked at
            inside = self._inside(self._real(directory, name))
        else:  # one of its symlinks, or a name that stays where its directory is
            target = links.get(name)
            inside = directory.inside if target is None else self._inside(target)
        return None if inside else self._escape(workdir, relative)

    def _escape(self, workdir: str, relative: str) -> str:
        return (
            f"workdir {workdir!r} escapes the site's data directory through a symlink "
            f"({self._culprit(relative)})"
        )

    def _directory(self, relative: str) -> _Directory:
        known = self._dirs.get(relative)
        if known is None:
            parent, _, name = relative.rpartition("/")
            above = self._directory(parent)
            real = self._real(above, name)
            # not there (yet): neither is anything below it, nothing more to look at
            exists = above.exists and os.path.isdir(real)
            known = self._dirs[relative] = _Directory(real, self._inside(real), exists)
        return known

    def _real(self, directory: _Directory, name: str) -> str:
        """Where the entry ``name`` of ``directory`` leads."""
        path = os.path.join(directory.real, name)
        if not directory.exists:
            return path
        if directory.links is None:
            directory.asked += 1
            if directory.asked <= _LIST_AFTER:
                return os.path.realpath(path) if os.path.islink(path) else path
            directory.links = _links(directory.real)
        return directory.links.get(name, path)

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self._prefix)

    def _culprit(self, relative: str) -> str:
        """The first symlink on the way to ``relative`` that leads out, and its target."""
        path = self.path
        for part in relative.split("/"):
            path = os.path.join(path, part)
            if os.path.islink(path) and not self._inside(os.path.realpath(path)):
                return f"{path} -> {os.readlink(path)}"
        return f"{path} -> {os.path.realpath(path)}"


def _links(real: str) -> dict[str, str]:
    """Where each symlink in the directory ``real`` leads (none if it cannot be read)."""
    links = {}
    try:
        with os.scandir(real) as entries:
            for entry in entries:
                if entry.is_symlink():
                    links[entry.name] = os.path.realpath(entry.path)
    except OSError:
        pass
    return links

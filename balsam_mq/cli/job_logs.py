"""`job logs`: a job's job.out (its run's output) and balsam.log (its hooks' output), read
from its workdir where the site's directory is on this machine, and followed as they grow."""

from __future__ import annotations

import codecs
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import typer

from balsam_mq.cli.common import fail
from balsam_mq.cli.output import note
from balsam_mq.domain.states import TERMINAL_STATES, JobState
from balsam_mq.errors import NotFound
from balsam_mq.launcher.runs import OUTPUT_FILE
from balsam_mq.site.workdir import LOG_FILE

FILES = (OUTPUT_FILE, LOG_FILE)  # the launcher writes job.out, the site agent's hooks balsam.log
FOLLOW_INTERVAL = 0.25  # seconds between looks at the files while following
CHUNK = 1 << 20  # at most this many bytes of one file read at a time


@dataclass(frozen=True)
class JobPlace:
    """Where a job's files are: its workdir under its site's ``data/``."""

    job_id: int
    state: JobState
    site: str
    site_path: str
    hostname: str
    workdir: str

    @property
    def path(self) -> Path:
        return Path(self.site_path) / "data" / self.workdir

    def files(self) -> list[Path]:
        """The job's log files that exist; a clear error when its site's directory is not
        on this machine, or when it has written neither file yet."""
        host = f" on {self.hostname}" if self.hostname else ""
        if not self.site_path:
            fail(f"job {self.job_id}: site {self.site!r} has no directory recorded")
        if not Path(self.site_path).is_dir():
            fail(
                f"job {self.job_id}: the directory of site {self.site!r}, {self.site_path}{host},"
                f" is not on this machine ({socket.gethostname()}); run this command there"
            )
        found = [self.path / name for name in FILES if (self.path / name).is_file()]
        if not found:
            fail(
                f"job {self.job_id} is {self.state.value} and has no output yet: neither "
                f"{self.path / OUTPUT_FILE} nor {self.path / LOG_FILE} exists"
            )
        return found


async def locate(job_id: int) -> JobPlace:
    """The job's state, workdir and site, read alone (no parameters or results)."""
    from balsam_mq.sdk import Job, Site

    rows = await Job.objects.filter(id=job_id).values("site_id", "workdir", "state")
    if not rows:
        raise NotFound(f"job {job_id} does not exist")
    job = rows[0]
    sites = await Site.objects.filter(id=job["site_id"]).values("name", "path", "hostname")
    site = sites[0] if sites else {"name": str(job["site_id"]), "path": "", "hostname": ""}
    return JobPlace(
        job_id, job["state"], site["name"], site["path"], site["hostname"], job["workdir"]
    )


@dataclass
class Tail:
    """Files printed from where they were last read; a header names the file whenever the
    output moves from one file to another (as `tail` does with several files)."""

    paths: list[Path]
    offsets: dict[Path, int] = field(default_factory=dict)
    decoders: dict[Path, codecs.IncrementalDecoder] = field(default_factory=dict)
    current: Path | None = None

    def read(self) -> list[tuple[Path, str]]:
        """What each file gained since the last read (a file that shrank, truncated, is read
        again from its start)."""
        out: list[tuple[Path, str]] = []
        for path in self.paths:
            offset = self.offsets.get(path, 0)
            try:
                with path.open("rb") as stream:
                    size = stream.seek(0, 2)
                    if size < offset:
                        offset = 0
                    stream.seek(offset)
                    data = stream.read(min(size - offset, CHUNK))
            except FileNotFoundError:  # not written yet, or removed (a cleanup)
                continue
            if not data:
                continue
            self.offsets[path] = offset + len(data)
            if path not in self.decoders:
                self.decoders[path] = codecs.getincrementaldecoder("utf-8")("replace")
            text = self.decoders[path].decode(data)
            if text:
                out.append((path, text))
        return out

    def print(self, chunks: list[tuple[Path, str]]) -> None:
        for path, text in chunks:
            if path != self.current:
                if self.current is not None:
                    typer.echo("")
                typer.echo(f"==> {path} <==")
                self.current = path
            typer.echo(text, nl=False)
        sys.stdout.flush()

    def drain(self) -> None:
        """Print everything the files hold now."""
        while chunks := self.read():
            self.print(chunks)


def show_logs(place: JobPlace, *, follow: bool = False) -> Tail:
    """Print the job's files (those that exist); the :class:`Tail` to go on with: of
    both files when following (the one missing may appear)."""
    found = place.files()
    for name in FILES:
        if place.path / name not in found:
            note(f"no {name} yet ({place.path / name})")
    tail = Tail([place.path / name for name in FILES] if follow else found)
    tail.drain()
    return tail


def logs_json(place: JobPlace) -> dict[str, Any]:
    """`job logs --json`: the job, and each file's path and text (``null``: not written yet);
    the same errors as the lines when neither file is there."""
    found = place.files()
    return {
        "job_id": place.job_id,
        "state": place.state.value,
        "site": place.site,
        "workdir_path": str(place.path),
        "files": {
            name: {
                "path": str(path),
                "text": path.read_text(errors="replace") if path in found else None,
            }
            for name in FILES
            for path in [place.path / name]
        },
    }


async def follow_logs(job_id: int) -> None:
    """Print the job's files, then what they gain until the job reaches a final state
    (then what they hold at that moment), or until cancelled (Ctrl-C). A final job's
    files are printed once."""
    from balsam_mq.sdk import Job

    place = await locate(job_id)
    tail = show_logs(place, follow=True)
    if place.state in TERMINAL_STATES:
        return
    job = await Job.objects.get(id=job_id)
    async with anyio.create_task_group() as tg:

        async def tail_files() -> None:
            while True:
                tail.print(await anyio.to_thread.run_sync(tail.read))
                await anyio.sleep(FOLLOW_INTERVAL)

        tg.start_soon(tail_files)
        await Job.objects.wait([job])  # on events: a relay must run (every site agent runs one)
        tg.cancel_scope.cancel()
    await anyio.to_thread.run_sync(tail.drain)
    note(f"job {job_id} is {job.state.value}")

"""Consumer for JOB_FINISHED: deletes the app's ``cleanup_files`` globs in the workdir.

Only when ``file_cleaner.enabled``. Nothing outside the workdir is ever deleted: a
pattern that is absolute or climbs out (``../*``) is refused, and every match is
checked after resolving symlinks in its parent; a symlink is removed as a link, its
target is left alone.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import anyio

from balsam_mq.broker import Deferrals
from balsam_mq.domain import JobState
from balsam_mq.processors.consumers.base import JobConsumer, Pending

log = logging.getLogger(__name__)


def clean(workdir: Path, patterns: list[str]) -> tuple[list[Path], list[str]]:
    """Delete matches of ``patterns`` inside ``workdir``; returns (deleted, refused patterns)."""
    deleted: list[Path] = []
    refused: list[str] = []
    root = workdir.resolve()
    if not root.is_dir():
        return deleted, refused
    for pattern in patterns:
        if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            refused.append(pattern)
            continue
        for match in sorted(root.glob(pattern)):
            # the match's own name may be a symlink (removed as a link); its parent must
            # resolve inside the workdir
            if not match.parent.resolve().is_relative_to(root) or match.resolve() == root:
                refused.append(pattern)
                continue
            if match.is_symlink() or match.is_file():
                match.unlink(missing_ok=True)
            elif match.is_dir():
                shutil.rmtree(match)
            else:
                continue
            deleted.append(match)
    return deleted, refused


class CleanupConsumer(JobConsumer):
    accepts = (JobState.JOB_FINISHED,)

    async def process(self, pending: list[Pending]) -> Deferrals | None:
        if not self.ctx.config.file_cleaner.enabled:
            return None
        apps = await self.ctx.apps.get_many(p.job.app_id for p in pending)
        refusals: dict[tuple[str, tuple[str, ...]], list[int]] = {}  # one line per app, not job
        for p in pending:
            app = apps.get(p.job.app_id)
            if app is None or not app.doc.cleanup_files:
                continue
            workdir = self.ctx.site_dir.workdir(p.job.workdir)
            _, refused = await anyio.to_thread.run_sync(clean, workdir, app.doc.cleanup_files)
            if refused:
                refusals.setdefault((app.doc.name, tuple(refused)), []).append(p.id)
        for (app_name, patterns), job_ids in refusals.items():
            log.warning(
                "cleanup refused pattern(s) %s of app %r: they reach outside the workdir "
                "(%d job(s): %s)",
                list(patterns),
                app_name,
                len(job_ids),
                _some(job_ids),
            )
        return None


def _some(ids: list[int], shown: int = 5) -> str:
    """``1, 2, 3 ...`` at most ``shown`` ids, for a log line."""
    return ", ".join(map(str, ids[:shown])) + (" ..." if len(ids) > shown else "")

"""A wait's progress bar on stderr (done, failed, remaining), drawn by rich, imported only
when a bar is shown.

``progress=False`` (the default) shows nothing; ``True`` shows the bar when stderr is a
terminal and nothing otherwise (a log file, a pipe, a batch job's output); ``"always"``
shows it wherever stderr goes, with terminal control codes (a notebook, a terminal that
is not recognised).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from balsam_mq.domain import JobState
from balsam_mq.sdk.view import JobView

ShowProgress = bool | Literal["always"]


def check_progress(progress: object) -> ShowProgress:
    """``progress`` if it is one of the accepted values; else a ``ValueError`` saying them."""
    if isinstance(progress, bool):
        return progress
    if progress == "always":
        return "always"
    raise ValueError(f"progress must be False, True or 'always'; got {progress!r}")


@contextmanager
def wait_progress(total: int, progress: ShowProgress) -> Iterator[Callable[[JobView], None]]:
    """Inside the block, a bar of ``total`` jobs on stderr (when ``progress`` asks for
    one); yields ``ended(job)``, to call for each job as it reaches a final state."""
    if progress is False:
        yield lambda job: None
        return
    from rich.console import Console

    err = Console(stderr=True, force_terminal=True if progress == "always" else None)
    if not err.is_terminal:
        yield lambda job: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    done = failed = 0
    summary = "{task.fields[done]} done · {task.fields[failed]} failed · "
    summary += "{task.fields[remaining]} remaining"
    # the user's prints go above the bar when both streams are the terminal; stdout sent
    # elsewhere (a file) is left alone
    both = sys.stdout.isatty() and sys.stderr.isatty()
    with Progress(
        TextColumn("jobs"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(summary),
        console=err,
        auto_refresh=False,
        redirect_stdout=both,
        redirect_stderr=both,
    ) as bar:
        task = bar.add_task("jobs", total=total, done=0, failed=0, remaining=total)
        bar.refresh()

        def ended(job: JobView) -> None:
            nonlocal done, failed
            if job.state == JobState.FAILED:
                failed += 1
            else:
                done += 1
            remaining = total - done - failed
            bar.update(task, advance=1, done=done, failed=failed, remaining=remaining)
            bar.refresh()

        yield ended

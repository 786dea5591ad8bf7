"""Where a hook runs: the job's workdir as current directory, output appended to its balsam.log."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

LOG_FILE = "balsam.log"  # in a job's workdir: what its hooks printed


@contextlib.contextmanager
def in_workdir(workdir: Path) -> Iterator[None]:
    """Inside the block, the current directory is ``workdir`` (created if needed) and
    output appends to its ``balsam.log``: Python's ``sys.stdout`` and ``sys.stderr``, and
    this process's file descriptors 1 and 2 (child processes, C code). Where a hook runs.

    The process-wide state changes for the block: call hooks in it without awaiting."""
    workdir.mkdir(parents=True, exist_ok=True)
    previous = os.getcwd()
    os.chdir(workdir)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with (
        open(workdir / LOG_FILE, "ab", buffering=0) as log,
        open(workdir / LOG_FILE, "a", buffering=1) as text,
        contextlib.redirect_stdout(text),
        contextlib.redirect_stderr(text),
    ):
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            text.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            os.chdir(previous)

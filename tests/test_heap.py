"""What a long-running process made before it settles is out of every later full collection."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc, os
import balsam_mq.launcher.pilot, balsam_mq.processors.main  # a launcher's or agent's start-up
from balsam_mq import heap
before = len(gc.get_objects())
heap.settle()
after = len(gc.get_objects())
pid = os.fork()
if pid == 0:  # a warm worker forked after it inherits the frozen set
    os._exit(0 if len(gc.get_objects()) < before // 10 else 1)
_, status = os.waitpid(pid, 0)
print(before, after, gc.get_freeze_count(), os.waitstatus_to_exitcode(status))
"""


def test_settle_freezes_the_start_up_out_of_full_collections() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    )
    before, after, frozen, child = (int(w) for w in done.stdout.split())
    assert before > 50_000  # modules, classes, functions of a process's start-up
    assert after < before // 10  # what a full collection still traverses
    assert frozen > before // 2  # set aside, not collected: they live as long as the process
    assert child == 0

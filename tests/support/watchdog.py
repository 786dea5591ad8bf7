"""A teardown that hangs after its test failed ends the run, saying which and why.

pytest-timeout (and pytest's own faulthandler timeout) stop watching a test once it has
failed, so that a debugger may take over; a failed test whose teardown then waits for
ever (a fixture closing a connection a broker left half open, say) would hold the whole
run until CI's limit, with nothing said. This plugin watches the teardown of every failed
test: one still running after ``limit_s`` writes the test's id, its failure and every
thread's traceback to the real stderr, and ends the process with status 1.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from collections.abc import Iterator

import pytest


class TeardownWatchdog:
    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._stderr = os.dup(sys.stderr.fileno())  # pytest's capture is not active here
        self._failures: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self._failures[report.nodeid] = report.longreprtext

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Iterator[None]:
        said = self._failures.pop(item.nodeid, None)
        if said is None:  # pytest-timeout still watches it
            yield
            return
        timer = threading.Timer(self.limit_s, self._hung, args=(item.nodeid, said))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _hung(self, nodeid: str, said: str) -> None:
        text = (
            f"\n\nthe teardown of {nodeid} is still running after {self.limit_s:g} s: "
            f"ending the run.\nIts failure:\n{said}\n\nThe threads:\n"
        )
        os.write(self._stderr, text.encode())
        faulthandler.dump_traceback(file=self._stderr, all_threads=True)
        os._exit(1)

"""The test suite's own guard: a failed test whose teardown hangs ends the run, saying why."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SUPPORT = Path(__file__).resolve().parent / "support"


def test_a_failed_tests_hanging_teardown_ends_the_run_naming_the_test(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(SUPPORT.parent)!r})
            from support.watchdog import TeardownWatchdog

            def pytest_configure(config):
                config.pluginmanager.register(TeardownWatchdog(limit_s=1), "teardown-watchdog")
            """
        )
    )
    (tmp_path / "test_hang.py").write_text(
        textwrap.dedent(
            """
            import threading
            import pytest

            @pytest.fixture
            def stuck():
                yield
                threading.Event().wait()  # a teardown waiting for ever

            def test_fails(stuck):
                assert 1 == 2, "the reason it failed"
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:timeout"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "the teardown of test_hang.py::test_fails is still running after 1 s" in run.stderr
    assert "the reason it failed" in run.stderr  # its failure, which the run never printed
    assert "Thread" in run.stderr  # and where every thread waits

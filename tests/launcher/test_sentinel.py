"""The sentinel ends the launcher's jobs when the launcher goes, registered or not yet."""

from __future__ import annotations

import os
import subprocess
import sys

from support.waiting import until

from balsam_mq.launcher.sentinel import MARK, Sentinel


def _job(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A long job in a session of its own, as the launcher starts one."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env={**os.environ, **env},
        start_new_session=True,
    )


async def test_jobs_end_with_the_launcher_even_those_not_registered_yet() -> None:
    sentinel = await Sentinel.start(grace=1)
    registered = _job({MARK: str(sentinel.pid)})
    sentinel.watch(registered.pid)
    unregistered = _job({MARK: str(sentinel.pid)})  # started the instant the launcher died
    stranger = _job({MARK: "1"})  # another sentinel's job: left alone
    try:
        await sentinel.close()  # its stdin closes, as when the launcher dies
        await until(lambda: registered.poll() is not None and unregistered.poll() is not None)
        assert stranger.poll() is None
    finally:
        for p in (registered, unregistered, stranger):
            p.kill()
            p.wait()

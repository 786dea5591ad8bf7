"""Fixtures of the scheduler tests: fake scheduler commands on PATH, and a site to submit for."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from scheduler_helpers import Fake

from balsam_mq.domain import Site
from balsam_mq.store import Store

FAKE = Path(__file__).with_name("fake_scheduler.py")


@pytest.fixture
def fake_scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    bin_dir, state_dir = tmp_path / "bin", tmp_path / "sched"
    bin_dir.mkdir()
    state_dir.mkdir()
    for name in ("sbatch", "squeue", "scancel", "qsub", "qstat", "qdel"):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE} {name} "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SCHED_DIR", str(state_dir))
    return Fake(state_dir)


@pytest.fixture
async def hpc_site(store: Store, tmp_path: Path) -> Site:
    (tmp_path / "site").mkdir()
    return await store.sites.create(Site(name="hpc", path=str(tmp_path / "site")))

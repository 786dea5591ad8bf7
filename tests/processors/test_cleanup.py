"""Cleanup deletes the app's globs inside the workdir and never anything outside it."""

from __future__ import annotations

import os
from pathlib import Path

from balsam_mq.processors.consumers.cleanup import clean


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.h5").write_text("keep")
    (outside / "dir").mkdir()
    (outside / "dir" / "x.h5").write_text("keep")
    work = tmp_path / "data" / "job1"
    (work / "sub").mkdir(parents=True)
    (work / "a.h5").write_text("x")
    (work / "sub" / "b.h5").write_text("x")
    (work / "keep.txt").write_text("x")
    (work / "scratch").mkdir()
    (work / "scratch" / "big.imm").write_text("x")
    os.symlink(outside / "precious.h5", work / "link.h5")
    os.symlink(outside / "dir", work / "linkdir")
    return work, outside


def test_globs_inside_the_workdir_are_deleted(tmp_path: Path) -> None:
    work, outside = _tree(tmp_path)
    deleted, refused = clean(work, ["*.h5", "sub/*.h5", "scratch"])
    assert refused == []
    assert not (work / "a.h5").exists() and not (work / "sub" / "b.h5").exists()
    assert not (work / "scratch").exists()
    assert (work / "keep.txt").exists()
    # the symlink matched *.h5: the link goes, its target stays
    assert not (work / "link.h5").is_symlink()
    assert (outside / "precious.h5").read_text() == "keep"
    assert len(deleted) == 4


def test_patterns_escaping_the_workdir_are_refused(tmp_path: Path) -> None:
    work, outside = _tree(tmp_path)
    patterns = ["../*", "../../outside/*.h5", str(outside / "*.h5"), "linkdir/*.h5", "*/../../*"]
    deleted, refused = clean(work, patterns)
    assert deleted == []
    assert sorted(refused) == sorted(patterns)
    assert (outside / "precious.h5").read_text() == "keep"
    assert (outside / "dir" / "x.h5").read_text() == "keep"
    assert (work / "a.h5").exists()  # and nothing inside was touched by a refused pattern

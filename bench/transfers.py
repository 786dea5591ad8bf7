"""Stage-in over SSH with rsync: batched (one rsync for a batch of jobs) against one rsync
per file, for many small files and for a few large ones.

A throwaway OpenSSH server runs on a loopback port (``tests/support/sshd.py``: Debian's
``openssh-server``), so the figures are rsync's and SSH's own costs on this machine, not
a network's. Each "job" stages in one file to a working directory of its own, as the
site agent's stage-in does (``balsam_mq.processors.rsync.pull``). Per-file transfers of
small files are measured on a sample (``--sample``), each its own rsync and SSH login.

    python bench/transfers.py [--small 1000] [--large 10] [--large-mb 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "tests")]

from support.sshd import ssh_server  # noqa: E402
from workloads import spread  # noqa: E402

from balsam_mq.processors.batches import Item  # noqa: E402
from balsam_mq.processors.rsync import RsyncLocation, pull  # noqa: E402


def make_files(root: Path, kind: str, count: int, size: int) -> list[PurePosixPath]:
    (root / kind).mkdir(parents=True)
    paths = []
    for i in range(count):
        path = root / kind / f"{i}.dat"
        path.write_bytes(os.urandom(size))
        paths.append(PurePosixPath(path))
    return paths


async def one_run(
    location: RsyncLocation, ssh: str, remotes: list[PurePosixPath], work: Path, batched: bool
) -> float:
    """Seconds to stage ``remotes`` into job directories under ``work`` (emptied first)."""
    shutil.rmtree(work, ignore_errors=True)
    items = [Item(i, r, work / f"job{i}" / r.name, False) for i, r in enumerate(remotes)]
    t0 = time.perf_counter()
    groups = [items] if batched else [[item] for item in items]
    for group in groups:
        result = await pull(
            location, group, ssh_command=ssh, staging=work / ".staging", timeout_s=600
        )
        failed = [r for r in result.items if not r.done]
        if failed:
            raise SystemExit(f"transfer failed: {failed[0].error}")
    return time.perf_counter() - t0


async def main(small: int, large: int, large_mb: int, sample: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="balsam-transfers-") as tmp:
        root = Path(tmp)
        (root / "sshd").mkdir()
        remote = root / "remote"
        smalls = make_files(remote, "small", small, 4096)
        larges = make_files(remote, "large", large, large_mb * 2**20)
        with ssh_server(root / "sshd") as sshd:
            location = RsyncLocation.parse(f"rsync://{sshd.user}@127.0.0.1:{sshd.port}")
            cases = [
                (f"{small:,} files of 4 KiB, one rsync", smalls, True),
                (f"{sample:,} files of 4 KiB, one rsync each", smalls[:sample], False),
                (f"{large} files of {large_mb} MiB, one rsync", larges, True),
                (f"{large} files of {large_mb} MiB, one rsync each", larges, False),
            ]
            print(f"stage-in over SSH on 127.0.0.1, {runs} runs: min / median / max")
            for label, remotes, batched in cases:
                times = [
                    await one_run(location, sshd.ssh_command, remotes, root / "work", batched)
                    for _ in range(runs)
                ]
                size_mb = sum(Path(r).stat().st_size for r in remotes) / 2**20
                jobs = spread([len(remotes) / t for t in times], "{:,.0f}")
                mbs = spread([size_mb / t for t in times], "{:,.1f}")
                print(f"  {label:42s} {jobs:>22s} jobs/s {mbs:>22s} MB/s")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", type=int, default=1000, help="small files (4 KiB each)")
    p.add_argument("--large", type=int, default=10, help="large files")
    p.add_argument("--large-mb", type=int, default=20, help="size of each large file, MiB")
    p.add_argument("--sample", type=int, default=100, help="small files moved one per rsync")
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    asyncio.run(main(a.small, a.large, a.large_mb, a.sample, a.runs))

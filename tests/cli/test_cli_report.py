"""`balsam-mq report`: throughput, utilization and nodes over time, as a summary, CSV and a plot."""

from __future__ import annotations

import csv
import io
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio.lowlevel
import pytest
from cli_helpers import Adder, Cli, World, adders, drive

from balsam_mq.domain import JobState, utcnow
from balsam_mq.sdk import BatchJob, EventLog
from balsam_mq.store import Store

S = JobState


async def later() -> None:
    """Until the clock has left the millisecond of the events just written (timestamps keep
    milliseconds), so the next step's events are stamped later: a condition, not a delay."""
    start = utcnow()
    while utcnow() <= start:
        await anyio.lowlevel.checkpoint()


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def timestamps(to_state: str) -> list[str]:
    query = EventLog.objects.filter(to_state=to_state).order_by("timestamp")
    return [r["timestamp"].isoformat() for r in await query.values("timestamp")]


async def test_throughput(cli: Cli, world: World, store: Store, tmp_path: Path) -> None:
    jobs = await adders(4, tags={"run": "A"})
    ids = [j.id for j in jobs]
    await drive(store, ids[:1], S.JOB_FINISHED)
    await later()
    await drive(store, ids[1:3], S.JOB_FINISHED)
    await drive(store, ids[3:], S.RUNNING)

    summary = (await cli.ok("report", "throughput")).stdout.splitlines()
    assert summary[0] == "jobs: 3"
    assert [line.split(": ")[0] for line in summary[1:4]] == ["first", "last", "rate"]
    assert [line.split("\t")[1] for line in summary[4:]] == ["1", "2", "3"]  # a row per point

    out = tmp_path / "done.csv"
    result = await cli.ok("report", "throughput", "--site", "polaris", "--csv", str(out))
    assert result.stdout == "" and result.stderr == f"wrote {out}\n"
    written = rows(out.read_text())
    assert written[0] == ["time", "JOB_FINISHED"]
    assert [r[1] for r in written[1:]] == ["1", "2", "3"]
    assert [r[0] for r in written[1:]] == await timestamps("JOB_FINISHED")
    assert written[1][0] < written[2][0] == written[3][0]

    running = rows(
        (await cli.ok("report", "throughput", "--to-state", "RUNNING", "--csv", "-")).stdout
    )
    assert [r[1] for r in running] == ["RUNNING", "1", "2", "3", "4"]
    recent = await cli.ok("report", "throughput", "--tag", "run=A", "--since", "1h", "--csv", "-")
    assert len(rows(recent.stdout)) == 4

    # nothing selected: said on stderr, not an error
    for selection in (["--tag", "run=B"], ["--until", "1h"], ["--since", "2999-01-01"]):
        result = await cli.ok("report", "throughput", *selection)
        assert result.stdout == ""
        assert result.stderr == "no job entered JOB_FINISHED in the events selected\n"

    assert "unknown job state 'DONE'" in await cli.error(
        "report", "throughput", "--state", "DONE", code=2
    )
    assert "neither a time" in await cli.error("report", "throughput", "--since", "soon", code=2)
    assert await cli.error("report", "throughput", "-s", "nowhere") == (
        "error: site 'nowhere' does not exist"
    )


async def test_utilization(cli: Cli, world: World, store: Store, tmp_path: Path) -> None:
    big = await Adder.submit("big", x=1, num_nodes=2)
    packed = await Adder.submit("packed", x=2, node_packing_count=2)
    for ids, to in [
        ([big.id], S.RUNNING),
        ([packed.id], S.RUNNING),
        ([big.id], S.JOB_FINISHED),
        ([packed.id], S.FAILED),
    ]:
        await drive(store, ids, to)
        await later()

    nodes = rows((await cli.ok("report", "utilization", "--csv", "-")).stdout)
    assert nodes[0] == ["time", "running_nodes"]
    assert [r[1] for r in nodes[1:]] == ["2", "2.5", "0.5", "0"]
    assert [r[0] for r in nodes[1:3]] == await timestamps("RUNNING")
    jobs = rows((await cli.ok("report", "utilization", "--no-node-weighting", "--csv", "-")).stdout)
    assert jobs[0] == ["time", "running_jobs"] and [r[1] for r in jobs[1:]] == ["1", "2", "1", "0"]

    summary = dict(
        line.split(": ", 1)
        for line in (await cli.ok("report", "utilization")).stdout.splitlines()
        if ": " in line
    )
    assert summary["peak"].startswith("2.5 nodes at ") and summary["last"] == "0 nodes"

    plot = tmp_path / "busy.png"
    result = await cli.ok("report", "utilization", "--app", "Adder", "--plot", str(plot))
    assert result.stderr == f"wrote {plot}\n"
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and plot.stat().st_size > 1000
    assert "cannot write the plot" in await cli.error(
        "report", "utilization", "--plot", str(tmp_path / "busy.nosuchformat")
    )


async def test_plot_without_matplotlib(
    cli: Cli, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails, as when not installed
    plot = tmp_path / "p.png"
    assert await cli.error("report", "throughput", "--plot", str(plot)) == (
        "error: --plot needs matplotlib: pip install matplotlib (or pip install 'balsam_mq[plot]')"
    )
    assert not plot.exists()


async def test_nodes(cli: Cli, world: World) -> None:
    t0 = datetime(2024, 5, 1, 10, tzinfo=UTC)
    hour = timedelta(hours=1)
    for num_nodes, start, end in [(4, t0, t0 + 2 * hour), (2, t0 + hour, None), (8, None, None)]:
        batch = await BatchJob.objects.create(site_id=world.site.id, num_nodes=num_nodes)
        await BatchJob.objects.filter(id=batch.id).update(start_time=start, end_time=end)

    held = rows((await cli.ok("report", "nodes", "--site", "polaris", "--csv", "-")).stdout)
    assert held == [
        ["time", "nodes"],
        [t0.isoformat(), "4"],
        [(t0 + hour).isoformat(), "6"],
        [(t0 + 2 * hour).isoformat(), "2"],
    ]
    summary = (await cli.ok("report", "nodes")).stdout.splitlines()
    assert any(line.startswith("peak: 6 nodes at ") for line in summary)
    assert "average: 5 nodes" in summary  # 4 for an hour, then 6 for an hour

"""`balsam-mq queue submit | ls | rm` against the real store."""

from __future__ import annotations

import json
from typing import Any

import anyio.to_thread
from typer.testing import CliRunner

from balsam_mq.cli import app
from balsam_mq.domain import BatchJobState, Site
from balsam_mq.settings import Settings
from balsam_mq.store import Store

B = BatchJobState


def _env(settings: Settings) -> dict[str, str]:
    return {
        "BALSAM_MONGODB_URL": settings.mongodb_url,
        "BALSAM_AMQP_URL": settings.amqp_url,
        "BALSAM_DB": settings.db,
        "BALSAM_NAMESPACE": settings.namespace,
    }


async def _cli(settings: Settings, *args: str) -> Any:
    runner = CliRunner()
    return await anyio.to_thread.run_sync(
        lambda: runner.invoke(app, list(args), env=_env(settings))
    )


async def test_queue_submit_ls_rm(store: Store, settings: Settings) -> None:
    site = await store.sites.create(Site(name="polaris", path="/tmp/polaris"))
    result = await _cli(
        settings, "queue", "submit", "--site", "polaris", "-n", "4", "-t", "60",
        "-q", "debug", "-A", "datascience", "--job-mode", "serial", "--filter-tags", "run=H2O",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "BatchJob 1: 4 node(s), 60 min, pending submission" in result.output
    (stored,) = await store.batch_jobs.for_site(site.id or 0)
    assert (stored.num_nodes, stored.wall_time_min, stored.queue, stored.project) == (
        4, 60, "debug", "datascience",
    )  # fmt: skip
    assert stored.job_mode == "serial" and stored.filter_tags == {"run": "H2O"}

    listed = await _cli(settings, "queue", "ls", "--site", str(site.id), "--json")
    assert [b["id"] for b in json.loads(listed.output)] == [1]

    removed = await _cli(settings, "queue", "rm", "1")
    assert removed.output.strip() == "BatchJob 1: withdrawn before submission"
    assert (await store.batch_jobs.get(1)).state is B.FINISHED
    listed = await _cli(settings, "queue", "ls", "--site", "polaris", "--json")
    assert json.loads(listed.output) == []
    history = await _cli(settings, "queue", "ls", "--site", "polaris", "--history")
    assert history.output.split("\t")[:3] == ["1", "-", "finished"]

    second = await _cli(settings, "queue", "submit", "-s", "polaris", "-n", "1", "-t", "5")
    assert second.exit_code == 0
    await store.batch_jobs.set_state([2], B.QUEUED, fields={"scheduler_id": "77"})
    removed = await _cli(settings, "queue", "rm", "2")
    assert removed.output.strip() == "BatchJob 2: deletion requested"
    assert (await store.batch_jobs.get(2)).state is B.PENDING_DELETION

    again = await _cli(settings, "queue", "rm", "1")
    assert again.exit_code == 1
    assert again.output.strip() == "error: BatchJob 1 is already finished"
    unknown = await _cli(settings, "queue", "ls", "--site", "nowhere")
    assert unknown.exit_code == 1 and "error: site 'nowhere' does not exist" in unknown.output

"""Sites by name or id (``Site.objects.lookup``) and their removal (``site.delete``)."""

from __future__ import annotations

import anyio
import pytest

from balsam_mq import ApplicationDefinition, BatchJob, EventLog, Job, blocking
from balsam_mq.domain import BatchJobState
from balsam_mq.errors import InUse, MultipleResults, NotFound, QueryError
from balsam_mq.sdk import App, Client, Site
from balsam_mq.settings import Settings
from balsam_mq.store import Store


class Sim(ApplicationDefinition):
    site = "polaris"
    command_template = "sim {{ n }}"


async def test_lookup_by_name_id_or_digits(client: Client, site: Site) -> None:
    named_42 = await Site.objects.create(name="42")
    assert (await Site.objects.lookup("polaris")).id == site.id
    assert (await Site.objects.lookup(site.id)).name == "polaris"
    assert (await Site.objects.lookup(str(site.id))).name == "polaris"  # no site is called "1"
    assert (await Site.objects.lookup("42")).id == named_42.id  # a name wins over an id
    assert (await Site.objects.lookup(site)).id == site.id
    with pytest.raises(NotFound, match=r"^site 'nowhere' does not exist$"):
        await Site.objects.lookup("nowhere")
    with pytest.raises(NotFound, match=r"^site 99 does not exist$"):
        await Site.objects.lookup(99)
    with pytest.raises(QueryError, match="expected a site name, id or Site"):
        await Site.objects.lookup(1.5)


@pytest.mark.direct_only  # through a gateway, every site a caller sees is the caller's
async def test_a_name_shared_by_owners_is_ambiguous(client: Client, site: Site) -> None:
    await Site.objects.create(name="polaris", owner="someone")
    with pytest.raises(MultipleResults, match="site name 'polaris' is ambiguous"):
        await Site.objects.lookup("polaris")


async def test_app_lookup(client: Client, site: Site) -> None:
    await Sim.sync()
    (app,) = await App.objects.lookup("Sim")
    assert (await App.objects.lookup("apps.Sim", site="polaris")) == [app]
    assert (await App.objects.lookup(str(app.id))) == [app]
    await Site.objects.create(name="theta")
    with pytest.raises(NotFound, match=r"^no app 'Sim' at site 'theta'$"):
        await App.objects.lookup("Sim", site="theta")
    with pytest.raises(NotFound, match=r"^no app 'Nope'$"):
        await App.objects.lookup("Nope")


@pytest.mark.direct_only  # through a gateway, a removed site's events go with it
async def test_delete_refuses_a_site_in_use_unless_forced(client: Client, site: Site) -> None:
    await Job.objects.bulk_create([Sim.submit(f"s/{i}", n=i, save=False) for i in range(2)])
    queued = await BatchJob.objects.create(site_id=site.id or 0, num_nodes=1, wall_time_min=5)
    with pytest.raises(InUse, match=r"still has 2 jobs and 1 active batch job; remove it with"):
        await site.delete()
    with pytest.raises(InUse):
        await site.delete(dry_run=True)
    plan = await site.delete(force=True, dry_run=True)
    assert (plan.jobs, plan.apps, plan.batch_jobs) == (2, 1, 1)
    assert [b.id for b in plan.active_batch_jobs] == [queued.id]
    assert await Job.objects.count() == 2  # a dry run writes nothing

    removal = await site.delete(force=True)
    assert removal == plan
    assert await Site.objects.count() == 0
    assert await Job.objects.count() == await App.objects.count() == 0
    assert await BatchJob.objects.count() == 0
    # the event log outlives the jobs: 3 creation steps each
    assert await EventLog.objects.filter(kind="job").count() == 6
    with pytest.raises(NotFound, match="Site 1 does not exist"):
        await site.delete()


async def test_a_site_without_jobs_goes_without_force(client: Client, site: Site) -> None:
    await Sim.sync()
    done = await BatchJob.objects.create(site_id=site.id or 0, num_nodes=1, wall_time_min=5)
    await BatchJob.objects.filter(id=done.id).update(state=BatchJobState.FINISHED)
    removal = await site.delete()
    assert (removal.jobs, removal.apps, removal.batch_jobs, removal.active_batch_jobs) == (
        0,
        1,
        1,
        [],
    )


def blocking_script(settings: Settings) -> tuple[str, int]:
    with blocking.connect(settings):
        blocking.Site.objects.create(name="laptop")
        site = blocking.Site.objects.lookup("laptop")
        assert isinstance(site, blocking.Site)
        return site.name, site.delete().apps


async def test_lookup_and_delete_without_await(settings: Settings, store: Store) -> None:
    assert await anyio.to_thread.run_sync(blocking_script, settings) == ("laptop", 0)
    assert await store.sites.all() == []

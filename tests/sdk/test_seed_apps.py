"""The user documentation's first half, example by example: registering apps, the submit()
shortcut, Python apps (Adder, NumpyPlusMPI), imported app modules, loading apps by site."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from balsam_mq import ApplicationDefinition, Job
from balsam_mq.domain import JobState
from balsam_mq.domain.serialization import deserialize, deserialize_app
from balsam_mq.sdk import Client, Site
from balsam_mq.store import Store

Drive = Listen = Any


def sleeper() -> type[ApplicationDefinition]:
    class Sleeper(ApplicationDefinition):
        site = "polaris"
        command_template = "sleep {{ sleeptime }} && echo goodbye"

    return Sleeper


async def test_sleeper_sync_stores_the_class_and_announces_it(
    client: Client, site: Site, store: Store, relay: object, listen: Listen
) -> None:
    Sleeper = sleeper()
    async with listen(f"app.{site.id}.synced") as events:
        await Sleeper.sync()
        with anyio.fail_after(10):
            event = await events.get()
    (app,) = await store.apps.by_name("Sleeper", site_id=site.id)
    assert event.kind == "app" and event.app_id == app.id and event.to_state == "synced"
    assert app.command_template == "sleep {{ sleeptime }} && echo goodbye"
    assert app.parameters["sleeptime"].required
    loaded = deserialize_app(app.serialized_class, what="Sleeper")
    assert loaded.__name__ == "Sleeper" and loaded.command_template == Sleeper.command_template
    assert "class Sleeper(ApplicationDefinition)" in app.source


async def test_a_second_sync_of_the_same_name_overwrites_and_keeps_the_id(
    client: Client, site: Site, store: Store
) -> None:
    await sleeper().sync()

    class Sleeper(ApplicationDefinition):
        site = "polaris"
        command_template = "sleep {{ sleeptime }} && echo hello {{ name }}"

    await Sleeper.sync()
    apps = await store.apps.by_name("Sleeper")
    assert len(apps) == 1
    assert set(apps[0].parameters) == {"sleeptime", "name"}
    assert await store.events.count(kind="app", app_id=apps[0].id) == 2


async def test_submit_shortcut_syncs_and_creates_a_job(
    client: Client, site: Site, store: Store
) -> None:
    Sleeper = sleeper()
    job = await Sleeper.submit(workdir="test/sleep_3", sleeptime=3)
    # nothing to stage in and a default preprocess: created runnable, every step recorded
    assert job.id is not None and job.state == JobState.PREPROCESSED
    history = [(e.from_state, e.to_state, e.by) for e in await store.events.for_job(job.id)]
    assert history == [
        ("CREATED", "READY", "client"),
        ("READY", "STAGED_IN", "stage_in"),
        ("STAGED_IN", "PREPROCESSED", "preprocess"),
    ]
    assert job.parameters == {"sleeptime": 3} and job.site_id == site.id
    stored = await store.jobs.get(job.id)
    assert stored.app_id == job.app_id and stored.workdir == "test/sleep_3"


async def test_submit_is_the_same_as_sync_then_job_save(
    client: Client, site: Site, store: Store
) -> None:
    Sleeper = sleeper()
    await Sleeper.sync()
    job = Job(workdir="test/sleep_3", app_id=Sleeper, parameters={"sleeptime": 3})
    await job.save()
    assert job.state == JobState.PREPROCESSED
    (app,) = await store.apps.by_name("Sleeper")
    assert (await store.jobs.get(job.id)).app_id == app.id  # type: ignore[arg-type]
    assert await store.events.count(kind="app") == 1  # save() did not sync again


async def test_bulk_create_of_unsaved_submissions(client: Client, site: Site) -> None:
    Sleeper = sleeper()
    jobs = [Sleeper.submit(workdir=f"test/{i}", sleeptime=3, save=False) for i in range(100)]
    assert all(j.id is None for j in jobs)
    jobs = await Job.objects.bulk_create(jobs)
    assert [j.workdir for j in jobs] == [f"test/{i}" for i in range(100)]
    assert await Job.objects.filter(app=Sleeper, state="PREPROCESSED").count() == 100


async def run_like_the_launcher(job: Job, name: str, drive: Drive) -> None:
    """Load the stored class as a site would, call run() with the job's parameters, and
    store the return value through the state machine."""
    cls = (await ApplicationDefinition.load_by_site("polaris"))[name]
    value = cls(job)._run_with(job.parameters)
    await drive([job.id], JobState.JOB_FINISHED, result=value)


async def test_adder_result(client: Client, site: Site, relay: object, drive: Drive) -> None:
    class Adder(ApplicationDefinition):
        site = "polaris"

        def run(self, x, y):  # type: ignore[no-untyped-def]
            return x + y

    job = await Adder.submit("test/5plus5", x=5, y=5)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_like_the_launcher, job, "Adder", drive)
        assert await job.result(timeout=30) == 10


MPI_RUNNER = textwrap.dedent(
    """
    import json
    import sys
    from mpi4py import MPI
    from balsam_mq.domain.serialization import (
        deserialize_app, deserialize_parameters, serialize_result
    )

    cls = deserialize_app(open(sys.argv[1]).read(), what="NumpyPlusMPI")
    params = deserialize_parameters(json.load(open(sys.argv[2])))
    value = cls(None)._run_with(params)
    if MPI.COMM_WORLD.Get_rank() == 0:
        open(sys.argv[3], "w").write(serialize_result(value))
    else:
        assert value is None
    """
)


@pytest.mark.mpi
async def test_numpy_plus_mpi(
    client: Client, site: Site, store: Store, relay: object, drive: Drive, tmp_path: Path
) -> None:
    import numpy as np

    class NumpyPlusMPI(ApplicationDefinition):
        site = "polaris"

        def run(self, *dims):  # type: ignore[no-untyped-def]
            from mpi4py import MPI

            if MPI.COMM_WORLD.Get_rank() == 0:
                return np.random.rand(*dims)

    job = await NumpyPlusMPI.submit(workdir="test/parallel", dims=[5], ranks_per_node=4)
    assert job.ranks_per_node == 4
    stored = await store.jobs.get(job.id)  # type: ignore[arg-type]
    (app,) = await store.apps.by_name("NumpyPlusMPI")
    (tmp_path / "app").write_text(app.serialized_class)
    assert stored.parameters == {"dims": [5]}  # plain JSON in the store
    (tmp_path / "params").write_text(json.dumps(stored.parameters))
    (tmp_path / "runner.py").write_text(MPI_RUNNER)
    command = ["mpiexec", "-n", str(stored.resources.ranks_per_node), sys.executable]
    command += [str(tmp_path / n) for n in ("runner.py", "app", "params", "out")]
    await anyio.run_process(command, check=True)
    value = deserialize((tmp_path / "out").read_text())
    await drive([job.id], JobState.JOB_FINISHED, result=value)
    result = await job.result(timeout=30)
    assert isinstance(result, np.ndarray) and result.shape == (5,)
    assert ((result >= 0) & (result < 1)).all()


PACKAGE = textwrap.dedent(
    """
    from balsam_mq import ApplicationDefinition

    class Packaged(ApplicationDefinition):
        site = "polaris"
        command_template = "echo {{ word }}"

    def setup_workflow(site):
        Packaged.site = site
        return Packaged
    """
)


async def test_apps_in_an_imported_module_are_stored_by_reference(
    client: Client, site: Site, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import statement replays where the app is loaded: the module must be there."""
    (tmp_path / "my_science_package.py").write_text(PACKAGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    from my_science_package import setup_workflow  # type: ignore[import-not-found]

    Packaged = setup_workflow(site="polaris")
    await Packaged.sync()
    (app,) = await store.apps.by_name("Packaged")
    assert deserialize_app(app.serialized_class, what="Packaged") is Packaged
    script = "import sys; from balsam_mq.domain.serialization import deserialize_app\n"
    script += "deserialize_app(sys.stdin.read(), what=\"App 'Packaged' at site 'polaris'\")"
    failed = await anyio.run_process(
        [sys.executable, "-c", script], input=app.serialized_class.encode(), check=False
    )
    stderr = failed.stderr.decode()
    assert failed.returncode != 0
    assert "SerializationError: App 'Packaged' at site 'polaris': cannot be deserialized" in stderr
    assert "my_science_package" in stderr


async def test_load_by_site_gives_classes_usable_like_local_ones(
    client: Client, site: Site, store: Store, relay: object, drive: Drive
) -> None:
    class Sleeper(ApplicationDefinition):
        site = "polaris"
        command_template = "sleep {{ sleeptime }} && echo goodbye"

    class Adder(ApplicationDefinition):
        site = "polaris"

        def run(self, x, y):  # type: ignore[no-untyped-def]
            return x + y

    await Sleeper.sync()
    await Adder.sync()
    apps_by_name = await ApplicationDefinition.load_by_site("polaris")
    assert set(apps_by_name) == {"Sleeper", "Adder"}
    assert set(await ApplicationDefinition.load_by_site(site.id)) == {"Sleeper", "Adder"}
    assert set(await ApplicationDefinition.load_by_site(site)) == {"Sleeper", "Adder"}
    LoadedSleeper = apps_by_name["Sleeper"]
    assert LoadedSleeper is not Sleeper and LoadedSleeper.__name__ == "Sleeper"
    job = await LoadedSleeper.submit("test/loaded", sleeptime=1)
    assert await store.events.count(kind="app") == 2  # a loaded class is not synced again
    (app,) = await store.apps.by_name("Adder")
    by_name = Job("t/by-name", app_id="Adder", parameters={"x": 1, "y": 2})
    by_id = Job("t/by-id", app_id=app.id, parameters={"x": 2, "y": 2})
    by_class = Job("t/by-class", app_id=apps_by_name["Adder"], parameters={"x": 3, "y": 2})
    await Job.objects.bulk_create([by_name, by_id, by_class])
    assert {by_name.app_id, by_id.app_id, by_class.app_id} == {app.id}
    assert job.app_id != app.id
    async with anyio.create_task_group() as tg:
        for j in (by_name, by_id, by_class):
            tg.start_soon(run_like_the_launcher, j, "Adder", drive)
        assert [await j.result(timeout=30) for j in (by_name, by_id, by_class)] == [3, 4, 5]

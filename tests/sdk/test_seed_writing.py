"""The user documentation's "Writing ApplicationDefinitions", example by example: description,
site identifier, environment, command template, run(), python_exe, parameter spec, transfer
slots and cleanup files."""

from __future__ import annotations

import functools
import sys
from typing import Any

import anyio
import pytest

from balsam_mq import ApplicationDefinition, Job
from balsam_mq.domain import JobState
from balsam_mq.errors import JobError, MultipleResults, NotFound
from balsam_mq.sdk import Client, Site
from balsam_mq.sdk.templates import render_command
from balsam_mq.store import Store

Drive = Any


async def stored(store: Store, name: str) -> Any:
    (app,) = await store.apps.by_name(name)
    return app


async def test_the_docstring_is_the_description(client: Client, site: Site, store: Store) -> None:
    class MySimulation(ApplicationDefinition):
        """
        Some description of the app goes here
        """

        site = "polaris"
        command_template = "/path/to/simulation.exe"

    await MySimulation.sync()
    assert (await stored(store, "MySimulation")).description == (
        "Some description of the app goes here"
    )


@pytest.mark.parametrize("how", ["name", "id", "object"])
async def test_the_site_may_be_a_name_an_id_or_a_site(
    client: Client, site: Site, store: Store, how: str
) -> None:
    ref = {"name": "polaris", "id": site.id, "object": site}[how]

    class MySimulation(ApplicationDefinition):
        site = ref
        command_template = "/path/to/simulation.exe"

    await MySimulation.sync()
    assert (await stored(store, "MySimulation")).site_id == site.id


@pytest.mark.direct_only  # through a gateway, every site a caller sees is the caller's
async def test_an_unknown_or_ambiguous_site_is_a_clear_error(client: Client, site: Site) -> None:
    class Nowhere(ApplicationDefinition):
        site = "theta"
        command_template = "true"

    with pytest.raises(NotFound, match=r"App 'Nowhere' at site 'theta': site 'theta' does not"):
        await Nowhere.sync()
    await Site.objects.create(name="aurora", owner="alice")
    await Site.objects.create(name="aurora", owner="bob")

    class Twice(ApplicationDefinition):
        site = "aurora"
        command_template = "true"

    with pytest.raises(
        MultipleResults,
        match=r"at site 'aurora': site name 'aurora' is ambiguous: id \d+ \(owner 'alice'",
    ):
        await Twice.sync()


async def test_environment_variables(client: Client, site: Site, store: Store) -> None:
    class MySimulation(ApplicationDefinition):
        """
        Some description of the app goes here
        """

        site = "polaris"
        environment_variables = {
            "HDF5_USE_FILE_LOCKING": "FALSE",
        }
        command_template = "/path/to/simulation.exe -inp {{ input_filename }}"

    await MySimulation.sync()
    app = await stored(store, "MySimulation")
    assert app.environment_variables == {"HDF5_USE_FILE_LOCKING": "FALSE"}


async def test_command_template_parameters_are_required_by_default(
    client: Client, site: Site, store: Store
) -> None:
    class MySimulation(ApplicationDefinition):
        site = "polaris"
        command_template = "/path/to/simulation.exe -inp {{ input_filename }}"

    with pytest.raises(JobError, match=r"missing required parameter\(s\) 'input_filename'"):
        await MySimulation.submit("sim/1")
    job = await MySimulation.submit("sim/1", input_filename="in.nw")
    app = await stored(store, "MySimulation")
    assert render_command(app, job.parameters) == "/path/to/simulation.exe -inp in.nw"


async def test_vecnorm_run(client: Client, site: Site, relay: object, drive: Drive) -> None:
    import numpy as np

    class VecNorm(ApplicationDefinition):
        site = "polaris"

        def run(self, vec):  # type: ignore[no-untyped-def]
            return np.linalg.norm(vec)

    job = await VecNorm.submit("norm/1", vec=[3, 4])
    cls = (await ApplicationDefinition.load_by_site("polaris"))["VecNorm"]
    async with anyio.create_task_group() as tg:
        value = cls(job)._run_with(job.parameters)
        tg.start_soon(functools.partial(drive, [job.id], JobState.JOB_FINISHED, result=value))
        assert await job.result(timeout=30) == 5.0


async def test_python_exe(client: Client, site: Site, store: Store) -> None:
    class VecNorm(ApplicationDefinition):
        site = "polaris"
        python_exe = "/path/to/bin/python3.8"

        def run(self, vec):  # type: ignore[no-untyped-def]
            import numpy as np  # Loaded from `python_exe`

            return np.linalg.norm(vec)

    class Default(ApplicationDefinition):
        site = "polaris"

        def run(self) -> None:
            pass

    await VecNorm.sync()
    await Default.sync()
    assert (await stored(store, "VecNorm")).python_exe == "/path/to/bin/python3.8"
    # not set: the interpreter of wherever the class is loaded (the site's own)
    assert (await stored(store, "Default")).python_exe == ""
    loaded = (await ApplicationDefinition.load_by_site("polaris"))["Default"]
    assert loaded.python_exe == sys.executable


async def test_parameter_spec(client: Client, site: Site, store: Store) -> None:
    class MySimulation(ApplicationDefinition):
        """
        Some description of the app goes here
        """

        site = "polaris"
        environment_variables = {
            "HDF5_USE_FILE_LOCKING": "FALSE",
        }
        command_template = "/path/to/sim.exe --mode {{ mode }} -inp {{ input_filename }}"
        parameters = {
            "input_filename": {"required": True},
            "mode": {
                "required": False,
                "default": "explore",
                "help": "The simulation mode (default: explore)",
            },
        }

    job = await MySimulation.submit("sim/1", input_filename="in.nw")
    app = await stored(store, "MySimulation")
    assert app.parameters["mode"].default == "explore"
    assert app.parameters["mode"].help == "The simulation mode (default: explore)"
    assert render_command(app, job.parameters) == "/path/to/sim.exe --mode explore -inp in.nw"
    other = await MySimulation.submit("sim/2", input_filename="b", mode="exploit")
    assert render_command(app, other.parameters) == "/path/to/sim.exe --mode exploit -inp b"


async def test_transfer_slots(client: Client, site: Site, store: Store) -> None:
    # verbatim from the documentation, trailing comma after the dict included
    class MySimulation(ApplicationDefinition):
        site = "polaris"
        command_template = "sim.exe"
        transfers = (
            {
                "input_file": {
                    "required": True,
                    "direction": "in",
                    "local_path": "input.nw",
                    "description": "Input Deck",
                    "recursive": False,
                },
                "result": {
                    "required": True,
                    "direction": "out",
                    "local_path": "job.out",
                    "description": "Calculation stdout",
                    "recursive": False,
                },
            },
        )

    await MySimulation.sync()
    job = await Job.objects.create(
        workdir="ensemble/1",
        app_name="sim.MySimulation",
        transfers={
            # Using 'laptop' alias defined in settings.yml
            "input_file": "laptop:/path/to/input.dat",
            "result": "laptop:/path/to/output.json",
        },
    )
    assert job.state == JobState.READY
    app = await stored(store, "MySimulation")
    assert job.app_id == app.id
    assert app.transfers["input_file"].direction == "in"
    assert app.transfers["result"].local_path == "job.out"
    assert (await store.jobs.get(job.id)).transfers["result"] == "laptop:/path/to/output.json"  # type: ignore[arg-type]
    with pytest.raises(JobError, match=r"required transfer slot\(s\) 'result' not filled"):
        await Job.objects.create(
            workdir="ensemble/2",
            app_name="MySimulation",
            transfers={"input_file": "laptop:/path/to/input.dat"},
        )


async def test_cleanup_files(client: Client, site: Site, store: Store) -> None:
    class MySimulation(ApplicationDefinition):
        """
        Some description of the app goes here
        """

        site = "polaris"
        environment_variables = {
            "HDF5_USE_FILE_LOCKING": "FALSE",
        }
        command_template = "/path/to/simulation.exe -inp {{ input_filename }}"
        cleanup_files = ["*.hdf", "*.imm", "*.h5"]

    await MySimulation.sync()
    assert (await stored(store, "MySimulation")).cleanup_files == ["*.hdf", "*.imm", "*.h5"]

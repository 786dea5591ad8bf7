"""Which client the class-level API uses: the one made current by connect(), else a default
client opened from the environment on first use; importing the SDK does no I/O."""

from __future__ import annotations

import json
import sys

import anyio
import pytest

from balsam_mq import ApplicationDefinition, Site, connect
from balsam_mq.domain import Job as JobDocument
from balsam_mq.domain.queries import QuerySpec
from balsam_mq.domain.serialization import deserialize, serialize_app, serialize_parameters
from balsam_mq.errors import ConfigError
from balsam_mq.sdk import Client, close_default_client, get_client
from balsam_mq.sdk.client import current_client
from balsam_mq.settings import Settings
from balsam_mq.store import Store


async def test_without_connect_a_default_client_comes_from_the_environment(
    settings: Settings, store: Store, topology: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("mongodb_url", "amqp_url", "db", "namespace"):
        monkeypatch.setenv(f"BALSAM_{name.upper()}", str(getattr(settings, name)))
    assert current_client() is None
    try:
        await Site.objects.create(name="polaris")

        class Sleeper(ApplicationDefinition):
            site = "polaris"
            command_template = "sleep {{ sleeptime }}"

        job = await Sleeper.submit("test/sleep_3", sleeptime=3)
        default = await get_client()
        assert default is await get_client()
        assert default.settings.db == settings.db
        assert (await store.jobs.get(job.id)).workdir == "test/sleep_3"  # type: ignore[arg-type]
    finally:
        await close_default_client()


async def test_connect_makes_a_client_current_and_nests(
    settings: Settings, store: Store, topology: object
) -> None:
    other_db = settings.db + "_other"
    async with connect(settings) as outer:
        assert current_client() is outer and await get_client() is outer
        await Site.objects.create(name="polaris")
        async with connect(settings, db=other_db) as inner:
            assert isinstance(inner, Client) and inner.settings.db == other_db
            assert await Site.objects.count() == 0
        assert current_client() is outer
        assert await Site.objects.count() == 1
        await store.client.drop_database(other_db)
    assert current_client() is None
    assert repr(outer) == f"<Client db={settings.db!r} namespace={settings.namespace!r}>"
    with pytest.raises(ConfigError, match="client is closed"):
        await outer.backend.count(QuerySpec("sites"))


IMPORT_ONLY = """
import threading
import balsam_mq, balsam_mq.sdk, balsam_mq.blocking
from balsam_mq import ApplicationDefinition, Job

class Sleeper(ApplicationDefinition):
    site = "polaris"
    command_template = "sleep {{ t }}"

query = Job.objects.filter(state="READY", app=Sleeper)[:5]
job = Sleeper.submit("w/1", t=1, save=False)
print(threading.active_count(), repr(query), job)
"""


RUN_A_STORED_APP = """
import json, sys
from balsam_mq import ApplicationDefinition
from balsam_mq.launcher.python_runner import run_spec

code, payload = run_spec(json.loads(sys.stdin.read()))
loaded = sorted(m for m in ("aio_pika", "aiormq", "pymongo", "motor") if m in sys.modules)
print(json.dumps({"code": code, "loaded": loaded, "payload": payload}))
"""


async def test_defining_and_running_an_app_loads_no_database_or_broker_library() -> None:
    """A run() process (a job outside the warm pool, an MPI rank) imports the app base class,
    loads the stored class and runs it; the client stack stays unloaded."""

    class Adder(ApplicationDefinition):
        site = "polaris"

        def run(self, x: int, y: int) -> int:
            return x + y

    spec = {
        "job_id": 1,
        "app_id": 1,
        "app_version": "v1",
        "app_name": "Adder",
        "serialized_class": serialize_app(Adder, what="Adder"),
        "parameters": serialize_parameters({"x": 2, "y": 3}, what="parameters"),
        "job": JobDocument(id=1, app_id=1, site_id=1, workdir="w").model_dump(mode="json"),
    }
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-c", RUN_A_STORED_APP], input=json.dumps(spec).encode()
        )
    out = json.loads(done.stdout.decode().splitlines()[-1])
    assert out["code"] == 0, out["payload"]
    assert deserialize(out["payload"]["result"]) == 5
    assert out["loaded"] == []


async def test_importing_and_building_do_no_io() -> None:
    env = {
        "BALSAM_MONGODB_URL": "mongodb://127.0.0.1:9/",
        "BALSAM_AMQP_URL": "amqp://x@127.0.0.1:9/",
    }
    with anyio.fail_after(20):
        done = await anyio.run_process([sys.executable, "-c", IMPORT_ONLY], env=env)
    threads, rest = done.stdout.decode().split(" ", 1)
    assert threads == "1"  # no blocking portal, no driver threads
    assert rest.startswith("<Query jobs filter(state__eq=")
    assert "Job(id=None, app='Sleeper', workdir='w/1', state=CREATED)" in rest


UNDER_ASYNCIO_RUN = """
import asyncio
from balsam_mq import ApplicationDefinition, Job, Site

class Adder(ApplicationDefinition):
    site = "laptop"

    def run(self, x, y):
        return x + y

async def main():
    await Site.objects.create(name="laptop")
    job = await Adder.submit("test/5plus5", x=5, y=5)
    print(job.id, await Job.objects.count())

asyncio.run(main())
"""


async def test_a_script_under_asyncio_run_ends_cleanly_with_the_default_client(
    settings: Settings, topology: object
) -> None:
    """The README's quick start: no closing code, and no traceback when the loop ends."""
    env = {f"BALSAM_{n.upper()}": str(getattr(settings, n)) for n in ("mongodb_url", "amqp_url")}
    env |= {"BALSAM_DB": settings.db, "BALSAM_NAMESPACE": settings.namespace}
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-c", UNDER_ASYNCIO_RUN], env=env, check=False
        )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["1", "1"]
    assert done.stderr.decode() == ""  # no "error occurred during closing of ..."

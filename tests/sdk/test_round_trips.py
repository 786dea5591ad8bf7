"""What one ``await App.submit()`` costs in MongoDB commands once the app is known."""

from __future__ import annotations

from support.commands import Commands

from balsam_mq import ApplicationDefinition, Site
from balsam_mq.broker import Topology
from balsam_mq.sdk import Client
from balsam_mq.sdk.client import use_client
from balsam_mq.sdk.direct import DirectBackend
from balsam_mq.settings import Settings
from balsam_mq.store import Store, open_store


async def test_a_repeated_submit_sends_three_commands_job_event_commit(
    settings: Settings, store: Store, topology: Topology, amqp: object
) -> None:
    """Ids come from blocks of 1, 2, 4, ... 64 (``store.counters.IdBlocks``): 31 single
    submissions reserve 5 times, and each sends the job, its events and the commit."""
    commands = Commands()
    async with open_store(settings.mongodb_url, settings.db, listeners=[commands]) as watched:
        client = Client(DirectBackend(watched, amqp, topology))  # type: ignore[arg-type]
        async with use_client(client):
            await Site.objects.create(name="polaris", path="/sites/polaris")

            class Echo(ApplicationDefinition):
                site = "polaris"
                command_template = "echo {{ x }}"

            await Echo.sync()
            reservations, ids = 0, []
            for i in range(31):
                commands.sent.clear()
                job = await Echo.submit(f"again/{i}", x=i)
                if commands.sent[0] == "findAndModify counters":
                    reservations += 1
                    commands.sent.pop(0)
                assert commands.sent == ["insert jobs", "insert events", "commitTransaction 1"]
                assert job.state == "PREPROCESSED"
                ids.append(job.id)
            assert reservations == 5
            assert ids == list(range(1, 32))
        await client.aclose()

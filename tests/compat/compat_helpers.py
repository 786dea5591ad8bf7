"""Running one example of Balsam's user guide in either flavour, and the apps and jobs the
examples refer to (the tutorial's Hello, the user guide's Adder)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from support.driving import Drive as Drive

from balsam_mq import ApplicationDefinition, Job, blocking
from balsam_mq.settings import Settings

T = TypeVar("T")


class Example:
    """One example, run in the flavour the test is parametrized with.

    ``await example.run(script, coroutine)`` runs ``script()`` (the example on
    ``balsam_mq.blocking``) in a worker thread inside ``blocking.connect`` to the test's
    database, or awaits ``coroutine()`` (the example on the async SDK, with the test's
    client current), and returns what it returned.
    """

    def __init__(self, flavour: str, settings: Settings) -> None:
        self.flavour = flavour
        self.settings = settings

    async def run(self, script: Callable[[], T], coroutine: Callable[[], Awaitable[T]]) -> T:
        if self.flavour == "async":
            return await coroutine()

        def connected() -> T:
            with blocking.connect(self.settings):
                return script()

        return await anyio.to_thread.run_sync(connected)


def hello() -> type[ApplicationDefinition]:
    """The tutorial's Hello app at theta-gpu, with the parameter the examples fill."""

    class Hello(ApplicationDefinition):
        site = "theta-gpu"
        command_template = "echo hello {{ name }}"

    return Hello


def adder(base: type[Any]) -> type[Any]:
    """The user guide's Adder at theta-gpu, on ``base`` (the async or the blocking class)."""

    class Adder(base):  # type: ignore[valid-type, misc]
        site = "theta-gpu"

        def run(self, x, y):  # type: ignore[no-untyped-def]
            return x + y

    return Adder


async def hello_jobs(*specs: str | tuple[str, dict[str, str]], **fields: Any) -> list[Job]:
    """Hello jobs at theta-gpu, created together in order: each spec a workdir, or a
    (workdir, tags) pair; ``fields`` go to every job."""
    jobs = []
    for spec in specs:
        workdir, tags = (spec, {}) if isinstance(spec, str) else spec
        job = Job(workdir, app_id="Hello", site="theta-gpu", parameters={"name": "x"}, **fields)
        job.tags.update(tags)
        jobs.append(job)
    return await Job.objects.bulk_create(jobs)


def ids(items: list[Any]) -> list[int]:
    return [i.id for i in items]

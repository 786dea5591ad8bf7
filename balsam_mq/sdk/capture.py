"""Capturing jobs created inside hooks: no I/O, the caller commits them with the hook's outcome.

Hooks run in the site agent's workers, where a plain ``def`` hook calls
``Job.objects.create(...)`` without ``await``. Inside :func:`capture`, job creation
(``Job.objects.create/bulk_create``, ``Job(...).save()``, ``App.submit(...)``) does no
I/O: it records the new jobs and returns them at once, usable with or without
``await``. The agent then creates them in the transaction that commits the hook.

Example::

    with capture() as captured:
        app.handle_timeout()
    new_jobs = captured.jobs
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Captured:
    """The jobs created while capturing, in creation order."""

    def __init__(self) -> None:
        self.jobs: list[Any] = []

    def record(self, job: Any) -> None:
        if not any(job is j for j in self.jobs):
            self.jobs.append(job)


_capture: ContextVar[Captured | None] = ContextVar("balsam_mq_capture", default=None)


@contextmanager
def capture() -> Iterator[Captured]:
    """Record job creations instead of writing them (see the module docstring)."""
    captured = Captured()
    token = _capture.set(captured)
    try:
        yield captured
    finally:
        _capture.reset(token)


def capturing() -> Captured | None:
    """The active capture, if job creation is being recorded."""
    return _capture.get()


class Ready(Generic[T]):
    """An awaitable that is already done: ``await Ready(x)`` is ``x``; ignoring it is fine."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, T]:
        yield from ()
        return self.value

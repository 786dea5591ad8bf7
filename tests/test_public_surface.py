"""The public surface: the names users import. A name that appears or vanishes must be a
decision, made here, not a side effect of moving code."""

from __future__ import annotations

import importlib

import pytest

# the same names, with and without await
TOP = [
    "App",
    "ApplicationDefinition",
    "BatchJob",
    "DeadLetters",
    "EventLog",
    "Job",
    "Site",
    "TransferItem",
    "connect",
    "errors",
]

SURFACE: dict[str, list[str]] = {
    "balsam_mq": TOP,
    "balsam_mq.blocking": TOP,
    "balsam_mq.sdk": [
        "ALL_COMPLETED", "App", "ApplicationDefinition", "BatchJob", "Client", "DeadLetters",
        "EventFeed",
        "EventLog", "FIRST_COMPLETED", "FIRST_EXCEPTION", "Job", "MemoryBackend", "Query", "Site",
        "TransferItem", "capture", "close_default_client", "connect", "get_client",
        "load_definitions", "sync_definitions", "use_client",
    ],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_public_names_are_exactly_the_pinned_ones_and_each_resolves(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(SURFACE[module])
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{module}.{name}"
    with pytest.raises(AttributeError, match="no attribute 'Nonexistent'"):
        mod.Nonexistent  # noqa: B018


def test_the_blocking_names_are_twins_of_the_async_ones() -> None:
    import balsam_mq
    import balsam_mq.blocking as blocking

    assert blocking.__all__ == balsam_mq.__all__
    for name in (
        "App",
        "ApplicationDefinition",
        "BatchJob",
        "EventLog",
        "Job",
        "Site",
        "TransferItem",
    ):
        twin, original = getattr(blocking, name), getattr(balsam_mq, name)
        # two faces of one base: the same fields and rules, plain calls instead of awaits
        (base,) = original.__bases__
        assert twin.__bases__ == (base,) and twin is not original, name
    # and the dead-letter queue: the same calls, plain
    for call in ("list", "get", "retry", "purge"):
        assert callable(getattr(blocking.DeadLetters, call))

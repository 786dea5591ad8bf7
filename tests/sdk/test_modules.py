"""Finding the ApplicationDefinition classes of a file or module, and syncing them together."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from balsam_mq.errors import AppError, NotFound
from balsam_mq.sdk import App, Client, Site, load_definitions, sync_definitions

SOURCE = """
from balsam_mq import ApplicationDefinition
from balsam_mq.blocking import ApplicationDefinition as BlockingDefinition

class Base(ApplicationDefinition):
    site = "polaris"
    command_template = "base"

class Child(Base):
    command_template = "child {{ x }}"

class Blocking(BlockingDefinition):
    site = "polaris"

    def run(self):
        return 1
"""


def test_a_file_defines_classes_in_order(tmp_path: Path) -> None:
    path = tmp_path / "defs.py"
    path.write_text(SOURCE)
    classes = load_definitions(path)
    assert [c.__name__ for c in classes] == ["Base", "Child", "Blocking"]
    assert load_definitions(str(path))[1].command_template == "child {{ x }}"
    assert "balsam_apps_defs" not in sys.modules  # not importable: travels by value


def test_a_module_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "defs_module_xyz.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert len(load_definitions("defs_module_xyz")) == 3
    finally:
        sys.modules.pop("defs_module_xyz", None)


def test_errors_name_the_source(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"app file 'missing.py' does not exist"):
        load_definitions("missing.py")
    with pytest.raises(NotFound, match="cannot import 'no_such_module_abc'"):
        load_definitions("no_such_module_abc")
    empty = tmp_path / "empty.py"
    empty.write_text("from balsam_mq import ApplicationDefinition\n")
    with pytest.raises(AppError, match="defines no ApplicationDefinition subclass"):
        load_definitions(empty)
    both = tmp_path / "both.py"
    both.write_text(
        "from balsam_mq import ApplicationDefinition\n"
        "class Both(ApplicationDefinition):\n"
        "    site = 'polaris'\n    command_template = 'x'\n    def run(self): pass\n"
    )
    with pytest.raises(AppError, match=r"both.py: App 'Both' at site 'polaris': define either"):
        load_definitions(both)


async def test_sync_checks_all_then_stores_all(
    memory: Client, memory_site: Site, tmp_path: Path
) -> None:
    path = tmp_path / "defs.py"
    path.write_text(SOURCE + "\nclass Bad(Base):\n    site = 'nowhere'\n")
    classes = load_definitions(path)
    with pytest.raises(NotFound, match="site 'nowhere' does not exist"):
        await sync_definitions(classes)
    assert await App.objects.count() == 0
    seen: list[str] = []
    apps = await sync_definitions(classes[:3], on_synced=lambda app: seen.append(app.name))
    assert [a.name for a in apps] == seen == ["Base", "Child", "Blocking"]
    child = await App.objects.get(name="Child")
    assert child.parameters["x"].required and child.site_id == memory_site.id

"""settings.yml: defaults, validation errors naming the key, the site directory layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from balsam_mq.errors import ConfigError
from balsam_mq.site.config import parse_config
from balsam_mq.site.directory import SiteDirectory


def test_created_directory_has_commented_defaults(tmp_path: Path) -> None:
    site = SiteDirectory.create(tmp_path / "s", name="laptop", site_id=4)
    assert site.data.is_dir() and site.logs.is_dir()
    text = site.settings_file.read_text()
    assert "# " in text and "workers: 2" in text
    _, config = SiteDirectory.open(tmp_path / "s")
    assert (config.site_id, config.name, config.hooks.workers) == (4, "laptop", 2)
    assert config.file_cleaner.enabled is False
    with pytest.raises(ConfigError, match="already a site"):
        SiteDirectory.create(tmp_path / "s", name="laptop", site_id=4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hooks: {workers: 0}", "hooks.workers: Input should be greater than or equal to 1"),
        ("hooks: {wrokers: 2}", "hooks.wrokers: Extra inputs are not permitted"),
        ("file_cleaner: {enabled: maybe}", "file_cleaner.enabled: Input should be a valid boolean"),
        ("transfers: {locations: {laptop: 'ftp://x'}}", "unknown protocol 'ftp'"),
        ("reaperr: {}", "unknown key(s) reaperr"),
        ("hooks: [", "not valid YAML"),
    ],
)
def test_invalid_settings_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert message in str(info.value)


def test_workdir_cannot_escape_data(tmp_path: Path) -> None:
    site = SiteDirectory.create(tmp_path / "s", name="x", site_id=1)
    assert site.workdir("a/b") == (site.data / "a" / "b").resolve()
    with pytest.raises(ConfigError, match="escapes"):
        site.workdir("../../etc")

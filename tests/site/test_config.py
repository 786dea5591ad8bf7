"""settings.yml: defaults, validation errors naming the key, the site directory layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from balsam_mq.errors import ConfigError
from balsam_mq.site.config import OTHER_SECTIONS, SiteConfig, parse_config
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.site.template import OWN_SECTIONS, SECTIONS, settings_text

TOP_LEVEL = [key for key in SiteConfig.model_fields if key not in OWN_SECTIONS]


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


def test_generated_settings_cover_every_section() -> None:
    own = {key for key, value in SiteConfig().model_dump().items() if isinstance(value, dict)}
    assert set(SECTIONS) == own | OTHER_SECTIONS


def test_generated_settings_parse_to_the_defaults() -> None:
    config = parse_config(settings_text(site_id=4, name="laptop"))
    assert (config.site_id, config.name) == (4, "laptop")
    for name, model in SECTIONS.items():
        if name in OTHER_SECTIONS:
            assert model.model_validate(config.section(name)) == model(), name
        else:
            assert getattr(config, name) == model(), name


def test_generated_settings_write_every_field() -> None:
    raw = yaml.safe_load(settings_text(site_id=4, name="laptop"))
    assert list(raw) == TOP_LEVEL + list(SECTIONS)
    for name, model in SECTIONS.items():
        assert list(raw[name]) == list(model.model_fields), name


def test_every_setting_has_a_description() -> None:
    fields = [(key, SiteConfig.model_fields[key]) for key in TOP_LEVEL]
    fields += [
        (f"{name}.{key}", field)
        for name, model in SECTIONS.items()
        for key, field in model.model_fields.items()
    ]
    missing = [key for key, field in fields if not field.description]
    assert not missing, f"settings without a description: {', '.join(missing)}"


def test_generated_settings_are_commented_and_fit() -> None:
    text = settings_text(site_id=4, name="laptop")
    assert text.startswith("# balsam_mq site settings. Every key is optional;")
    assert "  workers: 2 " in text and "# Worker processes that run" in text
    assert "One of: local | slurm | pbs." in text  # a Literal field lists its choices
    assert max(len(line) for line in text.splitlines()) <= 100


@pytest.mark.parametrize("name", ["yes", "123", "null", "a: b", "#x", "two\nlines", ""])
def test_site_name_is_quoted_as_needed(name: str) -> None:
    assert parse_config(settings_text(site_id=1, name=name)).name == name


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

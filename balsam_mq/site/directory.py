"""A site directory on disk: settings.yml, data/ (job workdirs), logs/ and the agent's pid file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from balsam_mq.errors import ConfigError
from balsam_mq.site.config import SiteConfig, load_config
from balsam_mq.site.template import settings_text

SETTINGS_FILE = "settings.yml"
PID_FILE = "agent.pid"


@dataclass(frozen=True)
class SiteDirectory:
    """Example::

    site_dir = SiteDirectory(Path("~/sites/polaris").expanduser())
    config = site_dir.config()
    workdir = site_dir.workdir("ensemble/1")
    """

    path: Path

    @property
    def settings_file(self) -> Path:
        return self.path / SETTINGS_FILE

    @property
    def data(self) -> Path:
        return self.path / "data"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def pid_file(self) -> Path:
        """Names the process running the site's agent (``site.pidfile``)."""
        return self.path / PID_FILE

    @property
    def agent_log(self) -> Path:
        return self.logs / "agent.log"

    @property
    def globus_tokens(self) -> Path:
        """The site's Globus tokens (``balsam-mq site globus-login``), readable by its owner."""
        return self.path / "globus-tokens.json"

    @property
    def staging(self) -> Path:
        """Where batched transfers stage files on their way (on the data's filesystem)."""
        return self.path / ".staging"

    def config(self) -> SiteConfig:
        return load_config(self.settings_file)

    def workdir(self, relative: str) -> Path:
        """The absolute workdir of a job; a workdir escaping ``data/`` is refused."""
        target = (self.data / relative).resolve()
        if not target.is_relative_to(self.data.resolve()):
            raise ConfigError(f"workdir {relative!r} escapes the site's data directory")
        return target

    @classmethod
    def create(cls, path: Path, *, name: str, site_id: int) -> SiteDirectory:
        """Lay out a new site directory; an existing settings file is an error."""
        path = path.expanduser().resolve()
        site = cls(path)
        if site.settings_file.exists():
            raise ConfigError(f"{site.settings_file} already exists: {path} is already a site")
        path.mkdir(parents=True, exist_ok=True)
        site.data.mkdir(exist_ok=True)
        site.logs.mkdir(exist_ok=True)
        site.settings_file.write_text(settings_text(site_id=site_id, name=name))
        return site

    @classmethod
    def find(cls, path: Path) -> SiteDirectory:
        """The site directory at ``path``, its settings file not read (only required)."""
        site = cls(path.expanduser().resolve())
        if not site.settings_file.is_file():
            raise ConfigError(f"{site.settings_file}: no such settings file (is this a site?)")
        return site

    def name(self) -> str:
        """The site's name, from its settings file even one that fails its checks (to name
        the site in messages), else the directory's."""
        try:
            raw = yaml.safe_load(self.settings_file.read_text())
        except (OSError, yaml.YAMLError):
            raw = None
        name = raw.get("name") if isinstance(raw, dict) else None
        return name if isinstance(name, str) and name else self.path.name

    @classmethod
    def open(cls, path: Path) -> tuple[SiteDirectory, SiteConfig]:
        site = cls(path.expanduser().resolve())
        config = site.config()
        if config.site_id is None:
            raise ConfigError(f"{site.settings_file}: site_id is missing")
        return site, config

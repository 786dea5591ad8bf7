"""What `site sync`, `start`, `stop` and `reload` say of a site's agent: the one told to
reload its settings (SIGHUP, as `site reload` sends it), in lines and in JSON."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from balsam_mq.domain import Site
from balsam_mq.errors import BalsamError
from balsam_mq.site.control import reload_if_running
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.site.pidfile import AgentRecord


@dataclass(frozen=True)
class AgentReload:
    """What `site sync` did about the agent of a site it synced apps to."""

    site: str
    message: str  # for people
    pid: int | None = None  # the agent told to reload
    error: str | None = None  # why it could not be told (its settings.yml is malformed, ...)

    def json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "reloaded": self.pid is not None,
            "pid": self.pid,
            "message": self.message,
        }


def reload_agent_of(site: Site) -> AgentReload:
    """Tell the agent of ``site`` to reload its settings, if it runs from a directory here."""
    if not site.path:
        return AgentReload(site.name, f"site {site.name!r} has no directory: nothing reloaded")
    site_dir = SiteDirectory(Path(site.path))
    if not site_dir.settings_file.is_file():
        return AgentReload(
            site.name,
            f"site {site.name!r}: no site directory at {site.path} on this machine: "
            "nothing reloaded",
        )
    try:
        record = reload_if_running(site_dir)
    except BalsamError as exc:
        return AgentReload(
            site.name, f"site {site.name!r}: settings not reloaded: {exc}", error=str(exc)
        )
    if record is None:
        return AgentReload(
            site.name,
            f"no agent of site {site.name!r} runs: nothing reloaded "
            "(an agent reads its settings when it starts)",
        )
    return AgentReload(site.name, reloading(site_dir, record), pid=record.pid)


def reloading(site_dir: SiteDirectory, record: AgentRecord) -> str:
    """What `site reload` and `site sync` say of an agent told to reload (SIGHUP)."""
    return (
        f"agent pid {record.pid} reloading settings (site {site_dir.name()!r}); what it "
        f"applied, and what needs a restart, goes to {site_dir.agent_log}"
    )


def agent_json(site_dir: SiteDirectory, record: AgentRecord) -> dict[str, Any]:
    """An agent for scripts (`site start`, `site reload`)."""
    return {
        "site": site_dir.name(),
        "pid": record.pid,
        "host": record.host,
        "started_at": record.started_at,
        "log": str(site_dir.agent_log),
    }

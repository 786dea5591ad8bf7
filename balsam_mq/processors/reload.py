"""Reloading settings.yml in a running agent (SIGHUP): which changes apply at once, which
reach only launchers started afterwards, which need a restart.

The file is checked whole first (every section, by the model that owns it): a malformed
one changes nothing, and the error names the key. Otherwise each changed key takes effect
as :data:`RULES` says. A change that needs a restart is not applied: the agent runs on with
its current value and names the change again at every reload until it restarts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from balsam_mq.site.config import SiteConfig, load_config
from balsam_mq.site.sections import check_sections, dotted
from balsam_mq.site.template import yaml_value


class Takes(StrEnum):
    NOW = "applied now"
    LAUNCHERS = "for launchers started from now on"
    RESTART = "needs a restart of the agent"


# a dotted key, or a section for each of its keys (a key's own rule wins) -> how a change
# takes effect in a running agent
RULES: dict[str, Takes] = {
    "site_id": Takes.RESTART,
    "name": Takes.RESTART,
    "hooks.workers": Takes.RESTART,  # the hook pool is sized when the agent starts
    "hooks": Takes.NOW,  # batch_size: the consumers' next batch; timeout_s: the next hook
    "file_cleaner": Takes.NOW,
    "transfers": Takes.NOW,
    "reaper": Takes.NOW,  # from its next pass
    "logs": Takes.NOW,
    "launcher": Takes.LAUNCHERS,  # a launcher reads its section when it starts
    "scheduler.kind": Takes.RESTART,  # the scheduler is chosen when the agent starts
    "scheduler": Takes.NOW,  # from its next pass
    "elastic_queue": Takes.NOW,
}


def takes(key: str) -> Takes:
    """How a change of the dotted ``key`` takes effect."""
    return RULES.get(key) or RULES[key.split(".", 1)[0]]


@dataclass(frozen=True)
class SettingChange:
    key: str
    old: Any
    new: Any

    @property
    def takes(self) -> Takes:
        return takes(self.key)

    def __str__(self) -> str:
        return f"{self.key} {yaml_value(self.old)} → {yaml_value(self.new)}"


@dataclass(frozen=True)
class Reload:
    """A checked settings.yml against the running settings."""

    config: SiteConfig  # what the agent runs with now: the file, but restart-only keys kept
    changes: list[SettingChange]

    def taking(self, how: Takes) -> list[SettingChange]:
        return [c for c in self.changes if c.takes is how]

    def messages(self) -> list[tuple[int, str]]:
        """The log lines that say what happened, with their levels."""
        if not self.changes:
            return [(logging.INFO, "settings.yml reloaded: nothing changed")]
        parts = [
            f"{how.value}: " + ", ".join(map(str, changed))
            for how in (Takes.NOW, Takes.LAUNCHERS)
            if (changed := self.taking(how))
        ]
        lines = [(logging.INFO, "settings.yml reloaded: " + "; ".join(parts))] if parts else []
        if restart := self.taking(Takes.RESTART):
            lines.append(
                (
                    logging.WARNING,
                    "settings.yml: not applied, these changes need a restart of the agent "
                    "(it runs on with the current values): " + ", ".join(map(str, restart)),
                )
            )
        return lines


def plan_reload(current: SiteConfig, path: Path) -> Reload:
    """Read and check ``path`` against ``current``; :class:`ConfigError` naming the key
    if the file is malformed."""
    new = load_config(path)
    check_sections(new, source=str(path))
    before, after = dotted(current), dotted(new)
    changes = [
        SettingChange(key, before.get(key), value)
        for key, value in after.items()
        if before.get(key) != value
    ]
    kept = {c.key: c.old for c in changes if c.takes is Takes.RESTART}
    return Reload(_with(new, kept) if kept else new, changes)


def _with(config: SiteConfig, values: dict[str, Any]) -> SiteConfig:
    """``config`` with some dotted keys set back to ``values``."""
    raw = config.model_dump(mode="json")
    for key, value in values.items():
        section, _, name = key.partition(".")
        if not name:
            raw[section] = value
        else:
            raw[section] = {**(raw.get(section) or {}), name: value}
    return SiteConfig.model_validate(raw)

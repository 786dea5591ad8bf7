"""Every section of a site's settings.yml checked by the model that owns it, and the whole
file as dotted keys (``hooks.workers``): what the agent checks at start and on a reload."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from balsam_mq.errors import invalid_settings
from balsam_mq.site.config import SiteConfig
from balsam_mq.site.template import OTHER_SECTION_MODELS, OWN_SECTIONS


def check_sections(config: SiteConfig, *, source: str = "settings.yml") -> None:
    """Refuse, naming the key, a malformed section that another module owns (``launcher``,
    ``scheduler``, ``elastic_queue``); the site's own ones were checked by
    :func:`~balsam_mq.site.config.parse_config`.

    Example::

        check_sections(load_config(path), source=str(path))   # ConfigError: ...: launcher.x: ...
    """
    for name, model in OTHER_SECTION_MODELS.items():
        try:
            model.model_validate(config.section(name))
        except ValidationError as exc:
            raise invalid_settings(source, exc, key=_within(name)) from None


def dotted(config: SiteConfig) -> dict[str, Any]:
    """Every setting of a checked ``config``, defaults included, as JSON values by dotted
    key: ``{"site_id": 4, "hooks.workers": 2, "launcher.app_run": "local", ...}``."""
    out: dict[str, Any] = {}
    for key, value in config.model_dump(mode="json", exclude=set(OTHER_SECTION_MODELS)).items():
        if key in OWN_SECTIONS:
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    for name, model in OTHER_SECTION_MODELS.items():
        section = model.model_validate(config.section(name)).model_dump(mode="json")
        out.update({f"{name}.{k}": v for k, v in section.items()})
    return out


def _within(section: str) -> Callable[[str], str]:
    return lambda key: f"{section}.{key}"

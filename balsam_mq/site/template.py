"""The commented settings.yml of a new site, written from the section models' defaults.

Every key of every section is written with its default, rendered as YAML, and its
model field's ``description`` as the comment (a ``Literal`` field adds its choices),
so the file ``balsam-mq site init`` writes cannot drift from what is validated.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from balsam_mq.launcher.config import LauncherSettings
from balsam_mq.site.batch_jobs import SchedulerSettings
from balsam_mq.site.config import SiteConfig
from balsam_mq.site.elastic import ElasticQueueSettings

HEADER = "# balsam_mq site settings. Every key is optional; the values shown are the defaults."
WIDTH = 100  # comments wrap to stay within this
MAX_COLUMN = 28  # comments start here, or earlier if every key and value is shorter

OWN_SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation
    for name, field in SiteConfig.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
}
# validated by the modules that own them; their names are SiteConfig's OTHER_SECTIONS
OTHER_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "launcher": LauncherSettings,
    "scheduler": SchedulerSettings,
    "elastic_queue": ElasticQueueSettings,
}
SECTIONS: dict[str, type[BaseModel]] = {**OWN_SECTIONS, **OTHER_SECTION_MODELS}

_Row = tuple[str, str | None]  # a "key: value" line and its comment


def settings_text(*, site_id: int, name: str) -> str:
    """The commented settings.yml of a new site: every key with its default.

    Example::

        site.settings_file.write_text(settings_text(site_id=4, name="laptop"))
    """
    top = SiteConfig(site_id=site_id, name=name).model_dump(mode="json")
    blocks: list[list[_Row]] = [
        [
            _row("", key, top[key], field)
            for key, field in SiteConfig.model_fields.items()
            if key not in OWN_SECTIONS
        ]
    ]
    for section, model in SECTIONS.items():
        defaults = model().model_dump(mode="json")
        rows = [_row("  ", key, defaults[key], field) for key, field in model.model_fields.items()]
        blocks.append([(f"{section}:", None), *rows])
    lengths = [len(line) for block in blocks for line, comment in block if comment]
    column = max([n for n in lengths if n < MAX_COLUMN - 1], default=0) + 2
    lines = [HEADER]
    for i, block in enumerate(blocks):
        if i:
            lines.append("")
        for line, comment in block:
            lines.extend(_commented(line, comment, column))
    return "\n".join(lines) + "\n"


def yaml_value(value: Any) -> str:
    """``value`` as a one-line YAML flow value: ``null``, ``true``, ``10``, ``[]``, ``'yes'``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 120, not 120.0
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000)
    text = text.removesuffix("...\n").strip()
    return text if "\n" not in text else json.dumps(value)  # JSON is YAML, on one line


def _row(indent: str, key: str, value: Any, field: FieldInfo) -> _Row:
    comment = field.description
    if get_origin(field.annotation) is Literal:
        choices = " | ".join(str(c) for c in get_args(field.annotation))
        comment = f"{comment} One of: {choices}." if comment else f"One of: {choices}."
    return f"{indent}{key}: {yaml_value(value)}", comment


def _commented(line: str, comment: str | None, column: int) -> list[str]:
    if not comment:
        return [line]
    start = max(column, len(line) + 2)
    parts = textwrap.wrap(comment, max(40, WIDTH - start - 2))
    first, rest = parts[0], parts[1:]
    return [f"{line:<{start}}# {first}", *(f"{'':<{start}}# {part}" for part in rest)]

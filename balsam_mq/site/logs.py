"""Log files in a site's ``logs/`` directory, rotated by size as its ``logs:`` settings say."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

from balsam_mq.site.config import LogSettings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def rotating_handler(path: Path, settings: LogSettings) -> RotatingFileHandler:
    """A handler appending to ``path``, which becomes ``path.1`` (and so on, up to
    ``settings.backups``) when it reaches ``settings.max_mb``.

    Example::

        logging.getLogger().addHandler(rotating_handler(site_dir.logs / "agent.log", config.logs))
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(
        path, maxBytes=_max_bytes(settings), backupCount=settings.backups, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


def apply_rotation(handler: RotatingFileHandler, settings: LogSettings) -> None:
    """New size and count for a handler already writing (a reloaded settings.yml)."""
    handler.maxBytes = _max_bytes(settings)
    handler.backupCount = settings.backups


def _max_bytes(settings: LogSettings) -> int:
    return max(1, int(settings.max_mb * 1024 * 1024))

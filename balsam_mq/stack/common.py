"""What the parts of the local stack share."""

from __future__ import annotations

import os
from pathlib import Path

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
POLL_S = 0.1  # between two looks at a service being started or stopped


def is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)

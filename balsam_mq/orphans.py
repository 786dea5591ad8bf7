"""A child process that ends with its parent (Linux): the agent's hook workers, the launcher's
sentinel, warm workers and serial-mode children get SIGTERM when the process that started
them dies, even by SIGKILL."""

from __future__ import annotations

import ctypes
import signal
from typing import Any

_PR_SET_PDEATHSIG = 1


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


# loaded here, in the parent: ``die_with_parent`` may run between fork and exec, where
# loading a library is not safe
_LIBC = _libc()


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """In the child: be sent ``signum`` when the parent dies (nothing where unsupported)."""
    prctl = getattr(_LIBC, "prctl", None)
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signum)

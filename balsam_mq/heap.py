"""Garbage collection in the long-running processes (site agent, launcher, warm pool): what
their start-up made is set aside, so that a full collection scans only what came after."""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect once, then freeze every object left: modules, classes, settings,
    connections live as long as the process, and each full collection would scan them
    all again (a stall of 20 to 50 ms in a busy launcher, site agent or warm worker,
    every few thousand jobs). Forked children (warm workers) inherit the frozen set."""
    gc.collect()
    gc.freeze()

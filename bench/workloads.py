"""The side-by-side workloads and their figures: what W1, W2 and W3 are, and min / median / max.

* W1: ``n`` jobs running ``true`` through bash, each in its own working directory,
  submitted in bulk; the clock runs from the first submission to the last job done.
* W2: ``n`` Python ``add(i, 1)`` jobs; every result is collected as it completes and
  checked; the clock runs from the first submission to the last result in hand.
* W3: ``k`` sequential ``add(1, 1)`` submit-to-result round trips after
  :data:`WARMUP` unmeasured ones; p50 and p95.

Every system measures itself with the same three numbers per run (:class:`Run`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

WARMUP = 5


@dataclass(frozen=True)
class Run:
    w1_s: float  # makespan of W1
    w2_s: float  # makespan of W2
    w3_p50_s: float
    w3_p95_s: float

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def check_sum(n: int, total: int) -> None:
    """W2's results, added up, are what ``add(i, 1)`` for ``i < n`` gives."""
    expected = sum(i + 1 for i in range(n))
    if total != expected:
        raise AssertionError(f"W2 results add up to {total}, expected {expected}")


def latencies(call: Callable[[], object], k: int) -> tuple[float, float]:
    """p50 and p95 of ``k`` timed calls of ``call`` (which must return 2) after warm-ups."""
    for _ in range(WARMUP):
        assert call() == 2
    times = []
    for _ in range(k):
        t0 = time.perf_counter()
        assert call() == 2
        times.append(time.perf_counter() - t0)
    return p50_p95(times)


def p50_p95(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), statistics.quantiles(times, n=20)[18]


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """``min / median / max`` of ``values``."""
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))

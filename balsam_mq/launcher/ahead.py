"""Jobs a launcher claims ahead of its free room, and the pace that sizes them.

Besides the jobs that fit the free room, a launcher claims a few *ahead*: as many as
its recent pace finishes in ``claim_ahead_s`` (none before two runs have ended, none
for long jobs), so that a slot that frees starts its next job at once instead of after
a broker and database round trip. They are topped up once half of them have started,
not one by one: a claim costs a transaction, so claims come in groups. A job claimed
ahead that waited :meth:`ClaimedAhead.hold_s` for room is given back.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, TypeVar

from balsam_mq.broker.topology import SHARED_MAX
from balsam_mq.domain import Job
from balsam_mq.launcher.config import LauncherSettings

PACE_RUNS = 64  # the last run ends the pace is taken over
P = TypeVar("P")


class Ahead(NamedTuple):
    """A job claimed ahead: when, and what its claim left of it that a transition decides
    on (the ``known`` of the change that ends its run)."""

    job: Job
    at: float
    known: Mapping[str, Any] | None


class ClaimedAhead:
    """The jobs claimed ahead, in claim order, and the recent ends of runs."""

    def __init__(self, settings: LauncherSettings) -> None:
        self.settings = settings
        self._queue: deque[Ahead] = deque()
        self._finishes: deque[float] = deque(maxlen=PACE_RUNS)

    def __len__(self) -> int:
        return len(self._queue)

    def __iter__(self) -> Iterator[Ahead]:
        return iter(self._queue)

    def run_ended(self, at: float) -> None:
        self._finishes.append(at)

    def allowance(self) -> int:
        """How many jobs to hold claimed beyond the free room: what the recent pace
        finishes in ``claim_ahead_s``."""
        if len(self._finishes) < 2:
            return 0
        # up to now, not to the last finish: the pace decays when runs stop finishing
        span = time.monotonic() - self._finishes[0]
        if span <= 0:
            return self.settings.claim_ahead_max
        pace = (len(self._finishes) - 1) / span
        return min(self.settings.claim_ahead_max, int(pace * self.settings.claim_ahead_s))

    def top_up(self) -> int:
        """How many more to claim ahead now: up to the allowance once half of those held
        have started, else none."""
        allowance = self.allowance()
        return allowance - len(self._queue) if 2 * len(self._queue) <= allowance else 0

    def hold_s(self) -> float:
        """How long a job claimed ahead waits for room before it is given back (and jobs
        delivered beyond the allowance are held)."""
        return max(10 * self.settings.claim_ahead_s, 0.05)

    def add(self, job: Job, known: Mapping[str, Any] | None) -> None:
        self._queue.append(Ahead(job, time.monotonic(), known))

    def take(self, older_than: float | None = None) -> list[Ahead]:
        """Remove and return those claimed before ``older_than`` (all with None)."""
        if older_than is None:
            taken, self._queue = list(self._queue), deque()
            return taken
        taken = [a for a in self._queue if a.at < older_than]
        self._queue = deque(a for a in self._queue if a.at >= older_than)
        return taken

    def forget(self, job_id: int) -> bool:
        """Drop the job ``job_id``; whether it was held."""
        kept = deque(a for a in self._queue if a.job.id != job_id)
        found = len(kept) < len(self._queue)
        self._queue = kept
        return found

    def next_placed(self, place: Callable[[Job], P | None]) -> tuple[Ahead, P] | None:
        """The first job held, removed with its place if ``place`` finds it one (None, and
        the job kept, if not): jobs claimed ahead start in claim order."""
        if not self._queue:
            return None
        placed = place(self._queue[0].job)
        if placed is None:
            return None
        return self._queue.popleft(), placed

    def oldest(self) -> float | None:
        return self._queue[0].at if self._queue else None


def wanted_prefetch(free_slots: int, ahead: ClaimedAhead) -> int:
    """Deliveries to hold: enough messages (of up to ``SHARED_MAX`` jobs) for the free
    slots plus the claim-ahead allowance, less what is already claimed ahead, and
    ``max_prefetch`` jobs at most; 0 (consuming paused) when there is no room at all."""
    wanted = free_slots + ahead.allowance() - len(ahead)
    wanted = min(wanted, ahead.settings.max_prefetch)
    return max(0, -(-wanted // SHARED_MAX))


def renew(current: int, wanted: int) -> bool:
    """Whether a prefetch of ``current`` should become ``wanted``: pause at once when there
    is no room (a full launcher holds no job back), resume at once when there is, else
    only when the room doubled or halved."""
    if (current == 0) != (wanted == 0):
        return True
    return wanted >= 2 * current or 2 * wanted <= current

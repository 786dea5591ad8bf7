"""The claim-ahead allowance follows the pace of recent runs, is topped up in groups, and
the runnable queue's prefetch pauses when there is no room at all."""

from __future__ import annotations

import time

from balsam_mq.broker.topology import SHARED_MAX
from balsam_mq.domain import Job
from balsam_mq.launcher.ahead import ClaimedAhead, renew, wanted_prefetch
from balsam_mq.launcher.config import LauncherSettings


def job(job_id: int) -> Job:
    return Job(id=job_id, app_id=1, site_id=1, workdir=f"w/{job_id}")


def paced(runs_per_s: float, **settings: object) -> ClaimedAhead:
    """Claim-ahead state that saw 11 runs end at ``runs_per_s`` up to now (the pace is
    taken up to the moment it is asked for: the figures below leave that time room)."""
    ahead = ClaimedAhead(LauncherSettings.model_validate(settings))
    now = time.monotonic()
    for i in range(11):
        ahead.run_ended(now - (10 - i) / runs_per_s)
    return ahead


def test_no_pace_no_claims_ahead() -> None:
    ahead = ClaimedAhead(LauncherSettings())
    assert ahead.allowance() == 0
    ahead.run_ended(time.monotonic())
    assert ahead.allowance() == 0  # one run end is not a pace


def test_the_allowance_is_what_the_pace_finishes_in_claim_ahead_s() -> None:
    assert 9 <= paced(4, claim_ahead_s=2.5).allowance() <= 10
    assert paced(1000, claim_ahead_s=1, claim_ahead_max=16).allowance() == 16
    assert paced(2, claim_ahead_s=0.25).allowance() == 0  # long jobs: none


def test_jobs_claimed_ahead_are_topped_up_once_half_have_started() -> None:
    ahead = paced(1000, claim_ahead_s=1, claim_ahead_max=8)
    assert ahead.top_up() == 8
    for i in range(5):
        ahead.add(job(i), None)
    assert ahead.top_up() == 0  # 5 of 8 still held: no claim for one or two more
    started = ahead.next_placed(lambda j: f"node for {j.id}")
    assert started is not None and started[0].job.id == 0 and started[1] == "node for 0"
    assert ahead.top_up() == 4  # 4 held: topped up to the allowance in one claim


def test_a_job_claimed_ahead_starts_in_claim_order_only_when_it_finds_room() -> None:
    ahead = ClaimedAhead(LauncherSettings())
    for i in range(2):
        ahead.add(job(i), None)
    assert ahead.next_placed(lambda j: None) is None  # no room: the first is kept
    assert [a.job.id for a in ahead] == [0, 1]
    placed = ahead.next_placed(lambda j: j.id)
    assert placed is not None and placed[0].job.id == 0 and [a.job.id for a in ahead] == [1]
    assert ahead.next_placed(lambda j: 7) is not None and ahead.next_placed(lambda j: 7) is None


def test_taking_older_ones_keeps_the_rest_in_claim_order() -> None:
    ahead = ClaimedAhead(LauncherSettings())
    for i in range(3):
        ahead.add(job(i), {"state": "RUNNING"})
    cutoff = time.monotonic()
    for i in range(3, 5):
        ahead.add(job(i), None)
    assert [a.job.id for a in ahead.take(older_than=cutoff)] == [0, 1, 2]
    assert [a.job.id for a in ahead] == [3, 4]
    assert ahead.forget(4) and not ahead.forget(4)
    assert [a.job.id for a in ahead.take()] == [3] and not ahead


def test_prefetch_covers_free_slots_and_allowance_in_messages_and_pauses_when_full() -> None:
    ahead = paced(1000, claim_ahead_s=10, claim_ahead_max=40, max_prefetch=30)
    assert wanted_prefetch(0, ClaimedAhead(LauncherSettings())) == 0  # no room: paused
    assert wanted_prefetch(2, ahead) == -(-30 // SHARED_MAX)  # capped at max_prefetch jobs
    assert renew(0, 1) and renew(3, 0)  # resume or pause at once
    assert not renew(4, 5) and renew(4, 8) and renew(4, 2)  # else when doubled or halved

"""The run invariants (``balsam_mq.domain.audit``) asserted over jobs in the test's store."""

from __future__ import annotations

from collections.abc import Sequence

from balsam_mq.domain.audit import Audit, audit
from balsam_mq.store import Store


async def assert_invariants(store: Store, ids: Sequence[int], *, terminal: bool = True) -> Audit:
    """Every job's history is a legal chain with nothing repeated, its document agrees,
    and (with ``terminal``) it has ended. Returns the audit (final states by count)."""
    ids = list(ids)
    report = audit(await store.events.history(ids), await store.jobs.states(ids), terminal=terminal)
    assert report.ok, report.describe()
    return report

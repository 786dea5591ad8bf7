"""MongoDB: open/close, schema, repositories, counters and the conditional transition."""

from balsam_mq.store.client import Store, open_store, unavailable, uncancelled
from balsam_mq.store.schema import ensure_schema

__all__ = ["Store", "ensure_schema", "open_store", "unavailable", "uncancelled"]

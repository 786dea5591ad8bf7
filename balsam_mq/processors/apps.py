"""The agent's view of apps: documents read fresh per batch, classes cached per version.

Reading the documents for every batch is one small query, and it is what makes a
re-synced app take effect at the next hook without a restart (hot reload): a new
version (``last_update``) misses the class cache here and in the hook workers.

A class that cannot be loaded here (its module is not importable on this site, say) is
not an error of the batch: its ``LoadedApp`` carries the reason, and the jobs that need
one of its own hooks fail with it, while the others proceed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from balsam_mq.domain import App
from balsam_mq.domain.serialization import deserialize_app
from balsam_mq.errors import SerializationError
from balsam_mq.sdk.definition import own_hooks
from balsam_mq.store import Store


@dataclass(frozen=True)
class LoadedApp:
    doc: App
    cls: type | None  # None: it could not be loaded here, for ``error``
    error: str | None = None

    @property
    def version(self) -> str:
        return self.doc.last_update.isoformat()

    def overrides(self, hook: str) -> bool:
        """Whether the app defines its own ``hook`` (else the default transition applies).
        A class that could not be loaded answers from the hooks recorded when it was synced
        (all of them, when those are not known)."""
        if self.cls is not None:
            return hook in own_hooks(self.cls)
        return self.doc.hooks is None or hook in self.doc.hooks


class AppCache:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._classes: dict[tuple[int, datetime], type] = {}

    async def get_many(self, app_ids: Iterable[int]) -> dict[int, LoadedApp]:
        out: dict[int, LoadedApp] = {}
        for doc in await self._store.apps.get_many(app_ids):
            assert doc.id is not None
            key = (doc.id, doc.last_update)
            if key not in self._classes:
                try:
                    cls = deserialize_app(doc.serialized_class, what=f"App {doc.name!r}")
                except SerializationError as exc:
                    out[doc.id] = LoadedApp(doc, None, str(exc))
                    continue
                self._classes = {k: v for k, v in self._classes.items() if k[0] != doc.id}
                self._classes[key] = cls
            out[doc.id] = LoadedApp(doc, self._classes[key])
        return out

"""What a job's passage through the steps with no work reads of its app (``domain.pipeline``):
which of its fields, read how, and what a move depends on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from balsam_mq.domain import App, JobState
from balsam_mq.domain.pipeline import DEFAULT_MOVES, Work

# the app fields a passage depends on: its steps' work, and the retry limit past which a
# restart fails the job
WORK_FIELDS = {
    **{"site_id": 1, "name": 1, "hooks": 1, "transfers": 1, "cleanup_files": 1},
    "max_retries": 1,
}


def work_of(
    apps: Mapping[int, App], app_id: int | None, transfers: Mapping[str, str]
) -> Work | None:
    """The work of app ``app_id``'s steps for a job with these transfer slots (None when
    the app is not among ``apps``)."""
    app = apps.get(app_id) if app_id is not None else None
    return None if app is None else Work.of(app, transfers)


def may_pass(state: JobState) -> bool:
    """Whether a move to ``state`` can depend on the app: a step to pass through, a
    finish whose routing depends on cleanup, or a restart its retry limit may refuse."""
    return state in DEFAULT_MOVES or state in (JobState.JOB_FINISHED, JobState.RESTART_READY)


_DEFAULT_MAX_RETRIES: int = App.model_fields["max_retries"].default


def max_retries_of(apps: Mapping[int, App], doc: Mapping[str, Any]) -> int:
    """The job's own retry limit, else its app's."""
    own = doc.get("max_retries")
    if own is not None:
        return int(own)
    app_id = doc.get("app_id")
    app = apps.get(app_id) if app_id is not None else None
    return _DEFAULT_MAX_RETRIES if app is None else app.max_retries


async def read_apps(
    apps: AsyncCollection[dict[str, Any]], app_ids: set[Any], s: AsyncClientSession
) -> dict[int, App]:
    """The apps ``app_ids`` (None left out) as a passage needs them, in session ``s``."""
    ids = sorted(i for i in app_ids if i is not None)
    if not ids:
        return {}
    cursor = apps.find({"_id": {"$in": ids}}, WORK_FIELDS, session=s)
    return {d["_id"]: App.from_doc(d) async for d in cursor}

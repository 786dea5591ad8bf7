"""The HTTP backend: the SDK through a balsam_mq gateway (``BALSAM_GATEWAY_URL``), for users
with no route to MongoDB or RabbitMQ.

Every call is one request (queries are read a page at a time, creations and changes
sent in chunks); errors come back as the same exception classes the direct backend
raises. Watches ride the gateway's event stream: a dropped stream reconnects by
itself, resuming after the last event it received, and a stream that could not resume
is reported as a gap (``None`` from ``next()``), after which the SDK re-reads, as it does
after a broker reconnection on the direct backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import httpx

from balsam_mq.domain import (
    App,
    BatchJob,
    BatchJobState,
    Change,
    Job,
    JobState,
    ParkedMessage,
    Site,
    SiteRemoval,
    TransitionResult,
)
from balsam_mq.domain.queries import MODELS, Condition, QuerySpec
from balsam_mq.domain.wire import (
    MAX_CREATE,
    MAX_PAGE,
    change_to_wire,
    jsonable,
    result_from_wire,
    spec_to_wire,
    values_from_wire,
)
from balsam_mq.errors import Unavailable
from balsam_mq.sdk.fields import CREATED_FIELDS
from balsam_mq.sdk.http_stream import EventStream, FinishedStream, Param, http_error
from balsam_mq.sdk.watch import TERMINAL_KEYS


class HttpBackend:
    """Implements :class:`~balsam_mq.sdk.backend.Backend` over a gateway's HTTP API."""

    def __init__(
        self, url: str, token: str, *, verify: bool | str = True, timeout_s: float = 60.0
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            # plain http needs no certificates (loading them takes a tenth of a second)
            verify=verify if self.url.startswith("https://") else False,
        )
        self._watches: set[EventStream] = set()

    async def aclose(self) -> None:
        for watch in list(self._watches):
            await watch.aclose()
        await self._http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            response = await self._http.request(
                method, path, json=None if body is None else jsonable(body), params=params
            )
        except httpx.TransportError as exc:
            raise Unavailable(f"the gateway at {self.url} cannot be reached: {exc!r}") from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_error:
            raise http_error(response.status_code, data, f"{method} {path}")
        return data

    # --- any resource ---------------------------------------------------------------------

    async def find(self, spec: QuerySpec) -> list[Any]:
        return [item async for item in self.iterate(spec)]

    async def iterate(self, spec: QuerySpec) -> AsyncIterator[Any]:
        model = MODELS[spec.resource]
        ordered = spec if spec.order else replace(spec, order=("id",))
        async for page in self._pages(ordered, "query", "items"):
            for item in page:
                yield model.model_validate(item)

    async def _pages(
        self, spec: QuerySpec, verb: str, key: str, **extra: Any
    ) -> AsyncIterator[list[Any]]:
        start = spec.start
        while spec.stop is None or start < spec.stop:
            stop = start + MAX_PAGE if spec.stop is None else min(spec.stop, start + MAX_PAGE)
            body = {**spec_to_wire(replace(spec, start=start, stop=stop)), **extra}
            page = (await self.call("POST", f"/{spec.resource}/{verb}", body))[key]
            if page:
                yield page
            if len(page) < stop - start:
                return
            start = stop

    async def count(self, spec: QuerySpec) -> int:
        return int(
            (await self.call("POST", f"/{spec.resource}/count", spec_to_wire(spec)))["count"]
        )

    async def values(self, spec: QuerySpec, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        ordered = spec if spec.order else replace(spec, order=("id",))
        rows: list[dict[str, Any]] = []
        async for page in self._pages(ordered, "values", "rows", fields=list(fields)):
            rows.extend(values_from_wire(spec.resource, fields, page))
        return rows

    async def update(self, spec: QuerySpec, fields: Mapping[str, Any]) -> int:
        body = {"where": spec_to_wire(spec)["where"], "set": dict(fields)}
        if spec.windowed:
            ids = [row["id"] for row in await self.values(spec, ("id",))]
            body["where"] = [["id", "in", ids]]
        return int((await self.call("PATCH", f"/{spec.resource}", body))["updated"])

    async def delete(self, spec: QuerySpec) -> int:
        if spec.resource == "sites":
            removed = 0
            for site in await self.find(spec):
                await self.delete_site(site.id, force=False, dry_run=False)
                removed += 1
            return removed
        where = spec_to_wire(spec)["where"]
        if spec.windowed:
            where = [["id", "in", [row["id"] for row in await self.values(spec, ("id",))]]]
        return int(
            (await self.call("POST", f"/{spec.resource}/delete", {"where": where}))["deleted"]
        )

    # --- sites and apps -------------------------------------------------------------------

    async def create_site(self, site: Site) -> Site:
        body = site.model_dump(include={"name", "hostname", "path", "settings", "owner"})
        return Site.model_validate(await self.call("POST", "/sites", body))

    async def sync_app(self, app: App) -> App:
        body = app.model_dump(exclude={"id", "last_update"})
        return App.model_validate(await self.call("PUT", "/apps", body))

    async def delete_site(self, site_id: int, *, force: bool, dry_run: bool) -> SiteRemoval:
        params = {"force": str(force).lower(), "dry_run": str(dry_run).lower()}
        answer = await self.call("DELETE", f"/sites/{site_id}", params=params)
        return SiteRemoval.model_validate(answer)

    # --- jobs -----------------------------------------------------------------------------

    async def create_jobs(
        self,
        documents: Iterable[dict[str, Any]],
        count: int,
        created: Callable[[int, list[dict[str, Any]]], None],
        apps: Mapping[int, App],
    ) -> None:
        """A request per :data:`MAX_CREATE` jobs (each all or none)."""
        offset = 0
        chunk: list[dict[str, Any]] = []
        for doc in documents:
            chunk.append({f: doc[f] for f in CREATED_FIELDS})
            if len(chunk) == MAX_CREATE:
                await self._create(offset, chunk, created)
                offset += len(chunk)
                chunk = []
        if chunk:
            await self._create(offset, chunk, created)

    async def _create(
        self,
        offset: int,
        chunk: list[dict[str, Any]],
        created: Callable[[int, list[dict[str, Any]]], None],
    ) -> None:
        answer = await self.call("POST", "/jobs", {"jobs": chunk})
        created(offset, [Job.model_validate(item).to_doc() for item in answer["items"]])

    async def get_jobs(self, job_ids: Sequence[int]) -> list[Job]:
        out: list[Job] = []
        ids = list(job_ids)
        for i in range(0, len(ids), MAX_PAGE):
            spec = QuerySpec("jobs", (Condition("id", "in", ids[i : i + MAX_PAGE]),), ("id",))
            out.extend(await self.find(spec))
        return out

    async def transition_jobs(self, changes: Sequence[Change]) -> TransitionResult:
        result = TransitionResult(moved=[], unmoved={}, final={})
        for i in range(0, len(changes), MAX_CREATE):
            body = {"changes": [change_to_wire(c) for c in changes[i : i + MAX_CREATE]]}
            part = result_from_wire(await self.call("POST", "/jobs/transition", body))
            result.moved.extend(part.moved)
            result.unmoved.update(part.unmoved)
            result.final.update(part.final)
        return result

    async def set_job_states(
        self,
        spec: QuerySpec,
        state: JobState,
        state_data: Mapping[str, Any],
        fields: Mapping[str, Any],
    ) -> int:
        body = {
            "where": spec_to_wire(spec)["where"],
            "state": state.value,
            "state_data": dict(state_data),
            "set": dict(fields),
        }
        return int((await self.call("POST", "/jobs/state", body))["updated"])

    # --- batch jobs -----------------------------------------------------------------------

    async def create_batch_job(self, batch_job: BatchJob) -> BatchJob:
        body = batch_job.model_dump(
            include={
                "site_id",
                "project",
                "queue",
                "num_nodes",
                "wall_time_min",
                "job_mode",
                "filter_tags",
            }
        )
        return BatchJob.model_validate(await self.call("POST", "/batch_jobs", body))

    async def set_batch_job_states(
        self, spec: QuerySpec, state: BatchJobState, fields: Mapping[str, Any]
    ) -> int:
        body = {"where": spec_to_wire(spec)["where"], "state": state.value, "set": dict(fields)}
        return int((await self.call("POST", "/batch_jobs/state", body))["updated"])

    # --- futures and live events ------------------------------------------------------------

    async def watch_finished(
        self, job_ids: Iterable[int], site_ids: Iterable[int]
    ) -> FinishedStream:
        keys = [f"job.{s}.{state}.#" for s in sorted(set(site_ids)) for state in TERMINAL_KEYS]
        stream = await self._open([("key", k) for k in keys] or [("key", "job.none.#")])
        return FinishedStream(stream, set(job_ids))

    async def subscribe_events(self, routing_keys: Sequence[str]) -> EventStream:
        return await self._open([("key", k) for k in routing_keys])

    async def _open(self, params: list[Param]) -> EventStream:
        stream = EventStream(self._http, params, closed=self._watches.discard)
        await stream.start()
        self._watches.add(stream)
        return stream

    # --- parked messages ------------------------------------------------------------------

    async def parked(self, limit: int | None = None) -> list[ParkedMessage]:
        params = {} if limit is None else {"limit": limit}
        return [_parked(m) for m in (await self.call("GET", "/dead", params=params))["items"]]

    async def replay_parked(self, message_ids: Collection[str] | None) -> list[ParkedMessage]:
        ids = None if message_ids is None else sorted(message_ids)
        answer = await self.call("POST", "/dead/replay", {"ids": ids})
        return [_parked(m) for m in answer["items"]]

    async def purge_parked(self, message_ids: Collection[str] | None) -> list[ParkedMessage]:
        ids = None if message_ids is None else sorted(message_ids)
        answer = await self.call("POST", "/dead/purge", {"ids": ids})
        return [_parked(m) for m in answer["items"]]


def _parked(item: dict[str, Any]) -> ParkedMessage:
    return ParkedMessage(**{**item, "body": item["body"].encode()})

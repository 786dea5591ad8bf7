"""Resolving what users name to stored documents: sites (name, id or Site), apps (class,
name or id), and syncing an ApplicationDefinition class."""

from __future__ import annotations

import inspect
from typing import Any

from balsam_mq.domain import App, Site
from balsam_mq.domain.appspec import app_label
from balsam_mq.domain.queries import Condition, QuerySpec, Resource
from balsam_mq.domain.serialization import serialize_app
from balsam_mq.errors import AppError, BalsamError, JobError, NotFound, QueryError
from balsam_mq.sdk.client import Client
from balsam_mq.sdk.definition import app_spec, label_of


def _spec(resource: Resource, **match: Any) -> QuerySpec:
    conditions = tuple(
        Condition(k, "in" if isinstance(v, list) else "eq", v) for k, v in match.items()
    )
    return QuerySpec(resource, conditions)


async def _ids(client: Client, spec: QuerySpec) -> list[int]:
    """The ids of the matches alone (an app document carries its whole class)."""
    return [d["id"] for d in await client.backend.values(spec, ("id",))]


def _site_id_of(ref: Any) -> int | None:
    """The id of a Site object (or a stored document with one)."""
    site_id = getattr(ref, "id", None)
    return site_id if isinstance(site_id, int) else None


async def find_site(
    client: Client, ref: Any, *, where: str, error: type[BalsamError] = AppError
) -> Site:
    """The one site ``ref`` names; unknown or ambiguous is an ``error`` naming ``where``."""
    if isinstance(ref, bool) or (not isinstance(ref, int | str) and _site_id_of(ref) is None):
        raise error(f"{where}: site must be a site name, id or Site object, got {ref!r}")
    if isinstance(ref, str):
        sites: list[Site] = await client.backend.find(_spec("sites", name=ref))
    else:
        site_id = ref if isinstance(ref, int) else _site_id_of(ref)
        sites = await client.backend.find(_spec("sites", id=site_id))
    if not sites:
        raise NotFound(f"{where}: site {ref!r} does not exist")
    if len(sites) > 1:
        options = ", ".join(f"id {s.id} (owner {s.owner!r})" for s in sites)
        raise error(f"{where}: site name {ref!r} is ambiguous: {options}; use the site id")
    return sites[0]


async def lookup_site(client: Client, ref: Any) -> Site:
    """The site a user names: a name, an id (also as digits, when no site has that name)
    or a Site. Unknown is :class:`NotFound`; a name shared by owners is ambiguous."""
    sites: list[Site] = []
    if isinstance(ref, str):
        sites = await client.backend.find(_spec("sites", name=ref))
        if not sites and ref.isdigit():
            ref = int(ref)
    if not sites and not isinstance(ref, str):
        site_id = ref if isinstance(ref, int) and not isinstance(ref, bool) else _site_id_of(ref)
        if site_id is None:
            raise QueryError(f"expected a site name, id or Site, got {ref!r}")
        sites = await client.backend.find(_spec("sites", id=site_id))
    if not sites:
        raise NotFound(f"site {ref!r} does not exist")
    if len(sites) > 1:
        options = ", ".join(f"id {s.id} (owner {s.owner!r})" for s in sites)
        raise QueryError(f"site name {ref!r} is ambiguous: {options}; use the site id")
    return sites[0]


async def site_name(client: Client, site_id: int) -> str:
    """The name of site ``site_id`` (for messages), asked once per client: ids are never
    reused and sites are not renamed."""
    name = client.site_names.get(site_id)
    if name is None:
        sites = await client.backend.find(_spec("sites", id=site_id))
        if not sites:
            return str(site_id)
        name = client.site_names[site_id] = sites[0].name
    return name


async def site_ids(client: Client, ref: Any) -> list[int]:
    """Every site id ``ref`` (a name, id, Site, or a list of them) may mean, for filters."""
    if isinstance(ref, list | tuple | set | frozenset):
        return sorted({i for r in ref for i in await site_ids(client, r)})
    if isinstance(ref, str):
        return await _ids(client, _spec("sites", name=ref))
    site_id = ref if isinstance(ref, int) and not isinstance(ref, bool) else _site_id_of(ref)
    if site_id is None:
        raise JobError(f"site filter: expected a site name, id or Site, got {ref!r}")
    return [site_id]


async def sync_class(client: Client, cls: type) -> App:
    """Check, serialize and store ``cls`` at its site (overwriting an earlier version)."""
    spec = app_spec(cls)
    site = await find_site(client, getattr(cls, "site", None), where=label_of(cls))
    assert site.id is not None
    label = app_label(cls.__name__, site.name)
    app = spec.model_copy(
        update={
            "site_id": site.id,
            "serialized_class": serialize_app(cls, what=label),
            "source": _source(cls),
        }
    )
    stored = await client.backend.sync_app(app)
    client.remember_app(cls, stored)
    return stored


def _source(cls: type) -> str:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):  # defined interactively, or loaded from the store
        return ""


async def app_for_class(client: Client, cls: type, *, sync: bool = True) -> App:
    """The App document of a class this client synced or loaded; else synced now, or with
    ``sync=False`` the app stored under the class's site and name."""
    known = client.known_app(cls)
    if known is not None:
        return known
    if sync:
        return await sync_class(client, cls)
    site = await find_site(client, getattr(cls, "site", None), where=label_of(cls))
    apps: list[App] = await client.backend.find(_spec("apps", name=cls.__name__, site_id=site.id))
    if not apps:
        raise NotFound(f"{label_of(cls)} is not synced (jobs created by hooks never sync apps)")
    return apps[0]


def is_definition(ref: Any) -> bool:
    return isinstance(ref, type) and hasattr(ref, "command_template") and hasattr(ref, "sync")


async def resolve_job_app(
    client: Client, ref: Any, site_ref: Any, job: str, *, sync: bool = True
) -> App:
    """The app a new job names: a class (synced if needed and ``sync``), an App, an id, or
    a name (``"module.Class"`` accepted; ``site`` narrows a name used at several sites)."""
    if is_definition(ref):
        return await app_for_class(client, ref, sync=sync)
    app_id = getattr(ref, "id", None) if isinstance(ref, App) else ref
    if isinstance(app_id, int) and not isinstance(app_id, bool):
        apps: list[App] = await client.backend.find(_spec("apps", id=app_id))
        if not apps:
            raise NotFound(f"{job}: App {app_id} does not exist")
        return apps[0]
    if not isinstance(ref, str):
        raise JobError(f"{job}: app_id must be an ApplicationDefinition, name or id, got {ref!r}")
    match: dict[str, Any] = {}
    if site_ref is not None:
        site = await find_site(client, site_ref, where=job, error=JobError)
        match["site_id"] = site.id
    apps = await client.backend.find(_spec("apps", name=ref, **match))
    if not apps and "." in ref:
        apps = await client.backend.find(_spec("apps", name=ref.rsplit(".", 1)[1], **match))
    if not apps:
        where = f" at site {site_ref!r}" if site_ref is not None else ""
        raise NotFound(f"{job}: no app named {ref!r}{where}")
    if len(apps) > 1:
        at = ", ".join(f"{a.id} (site {a.site_id})" for a in apps)
        raise JobError(f"{job}: app name {ref!r} is ambiguous: apps {at}; give site= or app_id")
    return apps[0]


async def app_ids(client: Client, ref: Any) -> list[int]:
    """Every app id ``ref`` (a class, App, name, id, or a list of them) means, for filters."""
    if isinstance(ref, list | tuple | set | frozenset):
        return sorted({i for r in ref for i in await app_ids(client, r)})
    if is_definition(ref):
        known = client.known_app(ref)
        if known is not None and known.id is not None:
            return [known.id]
        try:
            site = await find_site(client, getattr(ref, "site", None), where=label_of(ref))
        except NotFound:
            return []
        return await _ids(client, _spec("apps", name=ref.__name__, site_id=site.id))
    if isinstance(ref, App) and ref.id is not None:
        return [ref.id]
    if isinstance(ref, int) and not isinstance(ref, bool):
        return [ref]
    if isinstance(ref, str):
        ids = await _ids(client, _spec("apps", name=ref))
        if not ids and "." in ref:
            ids = await _ids(client, _spec("apps", name=ref.rsplit(".", 1)[1]))
        return ids
    raise JobError(f"app filter: expected an ApplicationDefinition, name or id, got {ref!r}")

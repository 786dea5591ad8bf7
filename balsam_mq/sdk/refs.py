"""The one resolver of what users name: sites (a name, an id, digits, a Site) and apps (an
ApplicationDefinition class, an App, an id, a name or ``"module.Class"``), and syncing a class.

One meaning per situation, whoever asks (``submit``, ``Job(...)``, filters, ``lookup``,
the CLI): nothing matches → :class:`NotFound`; a name matches several →
:class:`MultipleResults` listing them; a reference of the wrong kind → :class:`QueryError`.
``where`` (what was being done, e.g. ``"Job 'w/1'"``) prefixes the message.

What cannot change is cached per client, here: sites by id, for their names and paths
(ids are never reused, sites are neither renamed nor moved) and the App document of
each class the client synced or loaded.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from balsam_mq.domain import App, Site
from balsam_mq.domain.appspec import app_label
from balsam_mq.domain.queries import Condition, QuerySpec, Resource
from balsam_mq.domain.serialization import serialize_app
from balsam_mq.errors import MultipleResults, NotFound, QueryError
from balsam_mq.sdk.client import Client
from balsam_mq.sdk.definition import app_spec, label_of

_COLLECTIONS = (list, tuple, set, frozenset)


class _Known:
    """What a client has learned: its classes' App documents, sites by id."""

    def __init__(self) -> None:
        self.apps: weakref.WeakKeyDictionary[type, App] = weakref.WeakKeyDictionary()
        self.sites: dict[int, Site] = {}


_known: weakref.WeakKeyDictionary[Client, _Known] = weakref.WeakKeyDictionary()


def _of(client: Client) -> _Known:
    known = _known.get(client)
    if known is None:
        known = _known[client] = _Known()
    return known


def known_app(client: Client, cls: type) -> App | None:
    """The App document of ``cls`` if ``client`` synced or loaded it."""
    return _of(client).apps.get(cls)


def remember_app(client: Client, cls: type, app: App) -> None:
    _of(client).apps[cls] = app


def _spec(resource: Resource, **match: Any) -> QuerySpec:
    conditions = tuple(
        Condition(k, "in" if isinstance(v, list) else "eq", v) for k, v in match.items()
    )
    return QuerySpec(resource, conditions)


def _prefix(where: str | None) -> str:
    return f"{where}: " if where else ""


async def _ids(client: Client, spec: QuerySpec) -> list[int]:
    """The ids of the matches alone (an app document carries its whole class)."""
    return [d["id"] for d in await client.backend.values(spec, ("id",))]


def _site_id(ref: Any) -> int | None:
    """The id ``ref`` means directly: an int, or a Site (or any document with an int id)."""
    if isinstance(ref, bool):
        return None
    if isinstance(ref, int):
        return ref
    site_id = getattr(ref, "id", None)
    return site_id if isinstance(site_id, int) and not isinstance(site_id, bool) else None


# --- sites -----------------------------------------------------------------------------


async def lookup_site(client: Client, ref: Any, *, where: str | None = None) -> Site:
    """The one site ``ref`` names: a name, an id (also as digits, when no site has that
    name) or a Site."""
    site = await find_site(client.backend.find, ref, where=where)
    _remember_site(client, site)
    return site


def _remember_site(client: Client, site: Site) -> None:
    if site.id is not None:
        _of(client).sites[site.id] = site


async def _known_site(client: Client, site_id: int) -> Site | None:
    """Site ``site_id`` as this client first saw it (asked once); ``None`` if it is gone."""
    site = _of(client).sites.get(site_id)
    if site is None:
        sites = await client.backend.find(_spec("sites", id=site_id))
        if not sites:
            return None
        site = sites[0]
        _remember_site(client, site)
    return site


Find = Callable[[QuerySpec], Awaitable[list[Any]]]


async def find_site(find: Find, ref: Any, *, where: str | None = None) -> Site:
    """:func:`lookup_site` through any ``find`` of a ``QuerySpec`` (a backend's, or a
    store's ``queries.find`` where there is no SDK client: the launcher, the CLI)."""
    sites: list[Site] = []
    if isinstance(ref, str):
        sites = await find(_spec("sites", name=ref))
        if not sites and ref.isdigit():
            ref = int(ref)
    if not sites and not isinstance(ref, str):
        site_id = _site_id(ref)
        if site_id is None:
            raise QueryError(f"{_prefix(where)}expected a site name, id or Site, got {ref!r}")
        sites = await find(_spec("sites", id=site_id))
    if not sites:
        raise NotFound(f"{_prefix(where)}site {ref!r} does not exist")
    if len(sites) > 1:
        options = ", ".join(f"id {s.id} (owner {s.owner!r})" for s in sites)
        raise MultipleResults(
            f"{_prefix(where)}site name {ref!r} is ambiguous: {options}; use the site id"
        )
    site: Site = sites[0]
    return site


async def site_name(client: Client, site_id: int) -> str:
    """The name of site ``site_id``, for messages (asked once per client)."""
    site = await _known_site(client, site_id)
    return str(site_id) if site is None else site.name


async def site_path(client: Client, site_id: int) -> str:
    """The directory of site ``site_id`` as stored (``""`` if it has none or is gone),
    asked once per client."""
    site = await _known_site(client, site_id)
    return "" if site is None else site.path


async def site_ids(client: Client, ref: Any) -> list[int]:
    """Every site id ``ref`` (a name, id, Site, or a collection of them) may mean, for
    filters: a name shared by owners means all of theirs, an unknown name none."""
    if isinstance(ref, _COLLECTIONS):
        return sorted({i for r in ref for i in await site_ids(client, r)})
    if isinstance(ref, str):
        return await _ids(client, _spec("sites", name=ref))
    site_id = _site_id(ref)
    if site_id is None:
        raise QueryError(f"site filter: expected a site name, id or Site, got {ref!r}")
    return [site_id]


# --- apps ------------------------------------------------------------------------------


def is_definition(ref: Any) -> bool:
    return isinstance(ref, type) and hasattr(ref, "command_template") and hasattr(ref, "sync")


async def sync_class(client: Client, cls: type) -> App:
    """Check, serialize and store ``cls`` at its site (overwriting an earlier version)."""
    spec = app_spec(cls)
    site = await lookup_site(client, getattr(cls, "site", None), where=label_of(cls))
    assert site.id is not None
    app = spec.model_copy(
        update={
            "site_id": site.id,
            "serialized_class": serialize_app(cls, what=app_label(cls.__name__, site.name)),
            "source": _source(cls),
        }
    )
    stored = await client.backend.sync_app(app)
    remember_app(client, cls, stored)
    return stored


def _source(cls: type) -> str:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):  # defined interactively, or loaded from the store
        return ""


async def _class_app(client: Client, cls: type, *, sync: bool) -> App:
    """The App document of a class this client synced or loaded; else synced now, or with
    ``sync=False`` the app stored under the class's site and name."""
    known = known_app(client, cls)
    if known is not None:
        return known
    if sync:
        return await sync_class(client, cls)
    site = await lookup_site(client, getattr(cls, "site", None), where=label_of(cls))
    apps: list[App] = await client.backend.find(_spec("apps", name=cls.__name__, site_id=site.id))
    if not apps:
        raise NotFound(f"{label_of(cls)} is not synced (jobs created by hooks never sync apps)")
    return apps[0]


async def lookup_app(
    client: Client, ref: Any, site: Any = None, *, where: str | None = None, sync: bool = True
) -> App:
    """The one app ``ref`` names: a class (synced first if this client has not, unless
    ``sync`` is false), an App, an id, or a name (``"module.Class"`` accepted; ``site``
    narrows a name used at several sites)."""
    if is_definition(ref):
        return await _class_app(client, ref, sync=sync)
    app_id = ref.id if isinstance(ref, App) else ref
    if isinstance(app_id, int) and not isinstance(app_id, bool):
        apps: list[App] = await client.backend.find(_spec("apps", id=app_id))
        if not apps:
            raise NotFound(f"{_prefix(where)}App {app_id} does not exist")
        return apps[0]
    if not isinstance(ref, str):
        raise QueryError(
            f"{_prefix(where)}expected an ApplicationDefinition, app name or id, got {ref!r}"
        )
    match: dict[str, Any] = {}
    if site is not None:
        match["site_id"] = (await lookup_site(client, site, where=where)).id
    apps = await client.backend.find(_spec("apps", name=ref, **match))
    if not apps and "." in ref:
        apps = await client.backend.find(_spec("apps", name=ref.rsplit(".", 1)[1], **match))
    if not apps:
        at = f" at site {site!r}" if site is not None else ""
        raise NotFound(f"{_prefix(where)}no app named {ref!r}{at}")
    if len(apps) > 1:
        options = ", ".join(f"{a.id} (site {a.site_id})" for a in apps)
        raise MultipleResults(
            f"{_prefix(where)}app name {ref!r} is ambiguous: apps {options}; "
            "give the site or the app id"
        )
    return apps[0]


async def app_ids(client: Client, ref: Any) -> list[int]:
    """Every app id ``ref`` (a class, App, name, id, or a collection of them) may mean, for
    filters: a name used at several sites means all of them, an unknown one none."""
    if isinstance(ref, _COLLECTIONS):
        return sorted({i for r in ref for i in await app_ids(client, r)})
    if is_definition(ref):
        known = known_app(client, ref)
        if known is not None and known.id is not None:
            return [known.id]
        try:
            site = await lookup_site(client, getattr(ref, "site", None), where=label_of(ref))
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
    raise QueryError(f"app filter: expected an ApplicationDefinition, name or id, got {ref!r}")

"""Apps by the module: find the ApplicationDefinition classes a file or module defines, sync them.

A dotted module name (``mypkg.apps``) is imported: its classes travel by reference, so
the module must be importable where the apps run. A file (``my_apps.py``) is executed
as a module of its own, not importable elsewhere: its classes travel by value and the
site needs nothing but the stored app.
"""

from __future__ import annotations

import importlib
import runpy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from balsam_mq.domain import App
from balsam_mq.errors import AppError, NotFound
from balsam_mq.sdk import refs
from balsam_mq.sdk.app import ApplicationDefinitionBase
from balsam_mq.sdk.client import get_client
from balsam_mq.sdk.definition import app_spec, label_of


def load_definitions(source: str | Path) -> list[type[ApplicationDefinitionBase]]:
    """The ApplicationDefinition subclasses defined (not merely imported) in ``source``,
    a ``.py`` file or a dotted module name, in the order they are defined.

    Example::

        classes = load_definitions("my_apps.py")
    """
    path = Path(source)
    if isinstance(source, Path) or path.suffix == ".py" or "/" in str(source) or path.is_file():
        if not path.is_file():
            raise NotFound(f"app file {str(source)!r} does not exist")
        module_name = f"balsam_apps_{path.stem}"
        namespace = _execute(str(source), lambda: runpy.run_path(str(path), run_name=module_name))
    else:
        module_name = str(source)
        namespace = _execute(module_name, lambda: vars(importlib.import_module(module_name)))
    found = [
        value
        for value in namespace.values()
        if isinstance(value, type)
        and issubclass(value, ApplicationDefinitionBase)
        and value.__module__ == module_name
    ]
    if not found:
        raise AppError(f"{source}: defines no ApplicationDefinition subclass")
    return found


def _execute(source: str, run: Any) -> dict[str, Any]:
    try:
        namespace: dict[str, Any] = run()
    except ModuleNotFoundError as exc:
        raise NotFound(f"{source}: cannot import {exc.name!r}: {exc}") from exc
    except AppError as exc:
        raise AppError(f"{source}: {exc}") from exc
    except Exception as exc:  # user code: any failure becomes one clear, named error
        raise AppError(f"{source}: importing it failed: {type(exc).__name__}: {exc}") from exc
    return namespace


async def sync_definitions(
    classes: Sequence[type[ApplicationDefinitionBase]],
    on_synced: Callable[[App], object] | None = None,
) -> list[App]:
    """Sync every class (each to its own ``site``); all are checked before the first is
    stored, so one bad class syncs nothing. Returns the stored apps in order;
    ``on_synced`` is called with each as it is stored (progress).

    Example::

        for app in await sync_definitions(load_definitions("my_apps.py")):
            print(app.name, app.site_id)
    """
    client = await get_client()
    for cls in classes:
        app_spec(cls)
        await refs.lookup_site(client, getattr(cls, "site", None), where=label_of(cls))
    synced = []
    for cls in classes:
        synced.append(await refs.sync_class(client, cls))
        if on_synced is not None:
            on_synced(synced[-1])
    return synced

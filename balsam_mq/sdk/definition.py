"""From an ApplicationDefinition class to its App document: checks, parameter spec, run() binding.

No I/O here: :func:`app_spec` is what ``sync()`` stores (minus the site id and the
serialized class) and what ``submit()`` checks a job's inputs against.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from balsam_mq.domain import App, ParameterSpec
from balsam_mq.domain.appspec import (
    app_label,
    check_cleanup_files,
    check_environment,
    check_parameters,
    check_retries,
    check_transfers,
    is_plain_data,
)
from balsam_mq.domain.pipeline import HOOKS
from balsam_mq.errors import AppError
from balsam_mq.sdk.templates import template_variables

_SPECS: weakref.WeakKeyDictionary[type, App] = weakref.WeakKeyDictionary()


def site_display(site: Any) -> Any:
    """How a class's ``site`` attribute appears in messages: a name or an id."""
    name = getattr(site, "name", None)
    return name if isinstance(name, str) else site


def label_of(cls: type) -> str:
    return app_label(cls.__name__, site_display(getattr(cls, "site", None)))


def has_run(cls: type) -> bool:
    return callable(getattr(cls, "run", None))


def definition_base(cls: type) -> type | None:
    """The ``ApplicationDefinitionBase`` among the classes ``cls`` derives from, if any,
    found by name: a class loaded from the store may come with another copy of it."""
    return next(
        (
            k
            for k in getattr(cls, "__mro__", ())
            if k.__name__ == "ApplicationDefinitionBase" and k.__module__ == "balsam_mq.sdk.app"
        ),
        None,
    )


def defines(cls: type, method: str) -> bool:
    """Whether ``cls`` has its own ``method`` rather than ApplicationDefinition's."""
    base = definition_base(cls)
    mine = getattr(cls, method, None)
    if mine is None:
        return False
    default = getattr(base, method, None)
    return default is None or getattr(mine, "__code__", None) is not default.__code__


def own_hooks(cls: type) -> list[str]:
    """The lifecycle hooks ``cls`` defines itself (not inherited from ApplicationDefinition).

    A step whose hook is the default one is passed through without a consumer, so
    this is stored with the app at sync.
    """
    return [name for name in HOOKS if defines(cls, name)]


def check_kind(cls: type) -> None:
    """Exactly one of ``command_template`` and ``run()``; raised at class definition for
    both, at sync for neither."""
    template = getattr(cls, "command_template", None)
    if template is not None and has_run(cls):
        raise AppError(f"{label_of(cls)}: define either command_template or run(), not both")


def app_spec(cls: type) -> App:
    """The checked App document of ``cls`` (``site_id`` 0, no serialized class); cached."""
    cached = _SPECS.get(cls)
    if cached is not None:
        return cached
    spec = _build_spec(cls)
    _SPECS[cls] = spec
    return spec


def _build_spec(cls: type) -> App:
    label = label_of(cls)
    if getattr(cls, "site", None) is None:
        raise AppError(f"{label}: the site attribute is required (a site name, id or Site)")
    check_kind(cls)
    template = getattr(cls, "command_template", None)
    params = check_parameters(label, getattr(cls, "parameters", {}))
    extra = False
    if template is not None:
        if not isinstance(template, str):
            raise AppError(f"{label}: command_template must be a str, got {template!r}")
        for name in sorted(template_variables(label, template)):
            params.setdefault(name, ParameterSpec(required=True))
    elif has_run(cls):
        params, extra = _run_parameters(label, cls, params)
    else:
        raise AppError(f"{label}: define either command_template or run()")
    python_exe = _own_python_exe(cls)
    if not isinstance(python_exe, str):
        raise AppError(f"{label}: python_exe must be a str path, got {python_exe!r}")
    return App(
        site_id=0,
        name=cls.__name__,
        description=inspect.cleandoc(cls.__dict__.get("__doc__") or ""),
        parameters=params,
        extra_parameters=extra,
        transfers=check_transfers(label, getattr(cls, "transfers", {})),
        cleanup_files=check_cleanup_files(label, getattr(cls, "cleanup_files", [])),
        environment_variables=check_environment(label, getattr(cls, "environment_variables", {})),
        python_exe=python_exe,
        command_template=template,
        hooks=own_hooks(cls),
        **check_retries(
            label,
            getattr(cls, "max_retries", App.model_fields["max_retries"].default),
            getattr(cls, "retry_backoff_s", App.model_fields["retry_backoff_s"].default),
        ),
    )


def _own_python_exe(cls: type) -> Any:
    """``python_exe`` if a user class sets it; "" means the site's own interpreter."""
    for klass in cls.__mro__:
        if "python_exe" in klass.__dict__:
            if klass.__module__.startswith("balsam_mq."):
                return ""
            return klass.__dict__["python_exe"]
    return ""


def _run_parameters(
    label: str, cls: type, declared: dict[str, ParameterSpec]
) -> tuple[dict[str, ParameterSpec], bool]:
    """The parameters of ``run(self, ...)``; declared specs add help text or defaults."""
    signature = inspect.signature(cls.run)  # type: ignore[attr-defined]
    params: dict[str, ParameterSpec] = {}
    extra = False
    for p in list(signature.parameters.values())[1:]:
        if p.kind is p.VAR_KEYWORD:
            extra = True
        elif p.kind is p.VAR_POSITIONAL:
            params[p.name] = ParameterSpec(required=False, default=[], help=f"*{p.name}")
        elif p.default is p.empty:
            params[p.name] = ParameterSpec(required=True)
        else:
            default = p.default if is_plain_data(p.default) else repr(p.default)
            params[p.name] = ParameterSpec(required=False, default=default)
    for name, spec in declared.items():
        if name not in params and not extra:
            raise AppError(f"{label}: parameter {name!r} is not an argument of run()")
        params[name] = spec
    return params, extra


@functools.lru_cache(maxsize=256)
def _run_signature(run: Callable[..., Any]) -> tuple[inspect.Parameter, ...]:
    """The parameters of a ``run()`` after ``self`` (read once per function: a warm
    worker calls the same one job after job)."""
    return tuple(inspect.signature(run).parameters.values())[1:]


def run_arguments(cls: type, parameters: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """How ``run()`` is called with a job's parameters: ``*args`` take the list given for
    their name (``dims=[5]`` for ``run(self, *dims)``); everything else is by keyword."""
    listed = _run_signature(cls.run)  # type: ignore[attr-defined]
    rest = dict(parameters)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    positional = any(p.kind is p.VAR_POSITIONAL for p in listed)
    for p in listed:
        if p.kind is p.VAR_POSITIONAL:
            args.extend(rest.pop(p.name, []))
        elif p.kind is p.VAR_KEYWORD:
            continue
        elif p.name in rest:
            value = rest.pop(p.name)
            if p.kind is p.POSITIONAL_ONLY or (positional and p.kind is p.POSITIONAL_OR_KEYWORD):
                args.append(value)
            else:
                kwargs[p.name] = value
        elif p.kind is p.POSITIONAL_ONLY or (positional and p.kind is p.POSITIONAL_OR_KEYWORD):
            args.append(p.default)
    kwargs.update(rest)
    return args, kwargs

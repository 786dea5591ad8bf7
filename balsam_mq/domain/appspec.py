"""Rules for an app's parameter spec and transfer slots, and for a job's inputs against them.

Pure checks shared by the SDK (at ``sync()`` and ``submit()``) and the site agent. Every
message names the app (and job) and the field.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from balsam_mq.domain.models import App, ParameterSpec, TransferSlot
from balsam_mq.errors import AppError, JobError

TRANSFER_URI = re.compile(r"^(?P<alias>[A-Za-z0-9_][A-Za-z0-9_.\-]*):(?P<path>/.*)$")
_PARAM_KEYS = frozenset({"required", "default", "help"})
_SLOT_KEYS = frozenset({"required", "direction", "local_path", "description", "recursive"})
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def app_label(name: str, site: object) -> str:
    return f"App {name!r} at site {site!r}"


def is_identifier(name: object) -> bool:
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)


def is_plain_data(value: Any) -> bool:
    """JSON-like data a document can hold: str, numbers, bool, None, lists and str-keyed dicts."""
    if value is None or type(value) in (str, int, float, bool):
        return True
    if isinstance(value, list | tuple):
        return all(is_plain_data(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain_data(v) for k, v in value.items())
    return False


def check_parameters(label: str, spec: object) -> dict[str, ParameterSpec]:
    """The ``parameters`` class attribute as checked :class:`ParameterSpec` values."""
    if not isinstance(spec, Mapping):
        raise AppError(f"{label}: parameters must be a dict of name -> spec, got {spec!r}")
    out: dict[str, ParameterSpec] = {}
    for name, entry in spec.items():
        where = f"{label}: parameter {name!r}"
        if not is_identifier(name):
            raise AppError(f"{where} is not a valid Python identifier")
        if not isinstance(entry, Mapping):
            raise AppError(f"{where}: spec must be a dict, got {entry!r}")
        unknown = set(entry) - _PARAM_KEYS
        if unknown:
            raise AppError(f"{where}: unknown key(s) {sorted(unknown)}; use {sorted(_PARAM_KEYS)}")
        required = entry.get("required", True)
        if not isinstance(required, bool):
            raise AppError(f"{where}: 'required' must be True or False, got {required!r}")
        if required and "default" in entry:
            raise AppError(f"{where} is required but has a default")
        if not required and "default" not in entry:
            raise AppError(f"{where} is optional but has no default")
        default = entry.get("default")
        if not is_plain_data(default):
            raise AppError(
                f"{where}: default must be plain data (str, number, bool, None, list, dict), "
                f"got {type(default).__name__}"
            )
        help_text = entry.get("help", "")
        if not isinstance(help_text, str):
            raise AppError(f"{where}: 'help' must be a str")
        out[name] = ParameterSpec(required=required, default=default, help=help_text)
    return out


def check_transfers(label: str, slots: object) -> dict[str, TransferSlot]:
    """The ``transfers`` class attribute as checked :class:`TransferSlot` values.

    A dict wrapped in a one-element tuple (the trailing comma after ``transfers = {...},``
    in the user documentation's example) is accepted as that dict.
    """
    if isinstance(slots, tuple) and len(slots) == 1 and isinstance(slots[0], Mapping):
        slots = slots[0]
    if not isinstance(slots, Mapping):
        raise AppError(f"{label}: transfers must be a dict of slot name -> spec, got {slots!r}")
    out: dict[str, TransferSlot] = {}
    for name, entry in slots.items():
        where = f"{label}: transfer slot {name!r}"
        if not is_identifier(name):
            raise AppError(f"{where}: the name is not a valid Python identifier")
        if not isinstance(entry, Mapping):
            raise AppError(f"{where}: spec must be a dict, got {entry!r}")
        unknown = set(entry) - _SLOT_KEYS
        if unknown:
            raise AppError(f"{where}: unknown key(s) {sorted(unknown)}; use {sorted(_SLOT_KEYS)}")
        direction = entry.get("direction")
        if direction not in ("in", "out"):
            raise AppError(f"{where}: direction must be 'in' or 'out', got {direction!r}")
        local_path = entry.get("local_path")
        if not isinstance(local_path, str) or not local_path.strip():
            raise AppError(f"{where}: local_path must be a non-empty path, got {local_path!r}")
        path = PurePosixPath(local_path)
        if path.is_absolute() or ".." in path.parts:
            raise AppError(
                f"{where}: local_path {local_path!r} must be relative to the job workdir "
                "('.' for the workdir itself)"
            )
        for flag in ("recursive", "required"):
            if not isinstance(entry.get(flag, False), bool):
                raise AppError(f"{where}: {flag} must be True or False, got {entry[flag]!r}")
        description = entry.get("description", "")
        if not isinstance(description, str):
            raise AppError(f"{where}: description must be a str")
        out[name] = TransferSlot(
            required=entry.get("required", False),
            direction=direction,
            local_path=local_path,
            description=description,
            recursive=entry.get("recursive", False),
        )
    return out


def check_environment(label: str, env: object) -> dict[str, str]:
    if not isinstance(env, Mapping):
        raise AppError(f"{label}: environment_variables must be a dict of str -> str")
    for k, v in env.items():
        if not isinstance(k, str) or not _ENV_NAME.match(k):
            raise AppError(f"{label}: environment variable name {k!r} is not valid")
        if not isinstance(v, str):
            raise AppError(f"{label}: environment variable {k!r} must be a str, got {v!r}")
    return dict(env)


def check_retries(label: str, max_retries: object, backoff_s: object) -> dict[str, Any]:
    """``max_retries`` (an int >= 0) and ``retry_backoff_s`` (seconds >= 0) of an app."""
    if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
        raise AppError(f"{label}: max_retries must be an int >= 0, got {max_retries!r}")
    if not isinstance(backoff_s, int | float) or isinstance(backoff_s, bool) or backoff_s < 0:
        raise AppError(f"{label}: retry_backoff_s must be a number >= 0, got {backoff_s!r}")
    return {"max_retries": max_retries, "retry_backoff_s": float(backoff_s)}


def check_cleanup_files(label: str, patterns: object) -> list[str]:
    if isinstance(patterns, str) or not isinstance(patterns, list | tuple):
        raise AppError(f"{label}: cleanup_files must be a list of glob patterns")
    for p in patterns:
        if not isinstance(p, str) or not p or PurePosixPath(p).is_absolute() or ".." in p:
            raise AppError(f"{label}: cleanup_files pattern {p!r} must be relative to the workdir")
    return list(patterns)


def check_job_inputs(
    app: App,
    label: str,
    job: str,
    parameters: Mapping[str, Any],
    transfers: Mapping[str, Any],
) -> None:
    """Refuse missing, unknown or malformed parameters and transfers before a job is saved.

    ``label`` names the app (:func:`app_label`), ``job`` the job (id or workdir).
    """
    problem = job_input_problem(app, parameters, transfers)
    if problem is not None:
        raise JobError(f"{job} of {label}: {problem}")


def job_input_problem(
    app: App, parameters: Mapping[str, Any], transfers: Mapping[str, Any]
) -> str | None:
    """What is wrong with a job's parameters and transfers for ``app``, if anything."""
    unknown = [p for p in parameters if p not in app.parameters]
    if unknown and not app.extra_parameters:
        known = ", ".join(app.parameters) or "none"
        return f"unknown parameter(s) {_names(unknown)} (known: {known})"
    bad = [p for p in parameters if not is_identifier(p)]
    if bad:
        return f"parameter name(s) {_names(bad)} are not valid identifiers"
    missing = [p for p, s in app.parameters.items() if s.required and p not in parameters]
    if missing:
        return f"missing required parameter(s) {_names(missing)}"
    unknown = [t for t in transfers if t not in app.transfers]
    if unknown:
        known = ", ".join(app.transfers) or "none"
        return f"unknown transfer slot(s) {_names(unknown)} (slots: {known})"
    missing = [t for t, s in app.transfers.items() if s.required and t not in transfers]
    if missing:
        return f"required transfer slot(s) {_names(missing)} not filled"
    for slot, uri in transfers.items():
        if not isinstance(uri, str) or not TRANSFER_URI.match(uri):
            return f"transfer {slot!r}: {uri!r} is not a URI of the form alias:/absolute/path"
    return None


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)

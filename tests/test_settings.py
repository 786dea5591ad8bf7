"""Settings come from BALSAM_* variables; a malformed one is an error naming the variable."""

from __future__ import annotations

import pytest

from balsam_mq.errors import ConfigError
from balsam_mq.settings import load_settings


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("BALSAM_MONGODB_URL", "BALSAM_AMQP_URL", "BALSAM_DB", "BALSAM_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert s.mongodb_url.startswith("mongodb://127.0.0.1:27017")
    assert s.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert (s.db, s.namespace) == ("balsam", "balsam")


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALSAM_NAMESPACE", "prod")
    monkeypatch.setenv("BALSAM_PREFETCH", "64")
    s = load_settings()
    assert (s.namespace, s.prefetch) == ("prod", 64)


@pytest.mark.parametrize(
    ("var", "value", "reason"),
    [
        ("BALSAM_MONGODB_URL", "postgres://x", "must start with mongodb://"),
        ("BALSAM_AMQP_URL", "http://x", "must start with amqp://"),
        ("BALSAM_NAMESPACE", "a b", "only letters, digits"),
        ("BALSAM_PREFETCH", "lots", "valid integer"),
        ("BALSAM_MAX_ATTEMPTS", "0", "greater than or equal to 1"),
        ("BALSAM_LOG_LEVEL", "LOUD", "must be one of"),
    ],
)
def test_malformed_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"{var}: " in str(info.value)
    assert reason in str(info.value)


def test_messages_show_no_password_of_any_node() -> None:
    from balsam_mq.settings import redact_url

    urls = "amqp://u:secret1@a:5672/,amqp://u:secret2@b:5672/"
    assert redact_url(urls) == "amqp://u:***@a:5672/,amqp://u:***@b:5672/"

"""The one settings object, read from ``BALSAM_*`` environment variables by entry points.

Library code never builds ``Settings()`` itself: entry points (CLI, the default SDK
client, the site agent) call :func:`load_settings` once and pass the pieces down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from balsam_mq.errors import invalid_settings

ENV_PREFIX = "BALSAM_"


def _default_stack_dir() -> Path:
    return Path.home() / ".balsam_mq" / "stack"


class Settings(BaseSettings):
    """Deployment settings; every field is the env var ``BALSAM_<FIELD NAME>``.

    Example::

        BALSAM_MONGODB_URL=mongodb://db0:27017/?replicaSet=rs0 balsam-mq status
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    mongodb_url: str = Field(
        default="mongodb://127.0.0.1:27017/?directConnection=true",
        description="MongoDB connection URL; the server must be a replica set member.",
    )
    amqp_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/",
        description="RabbitMQ connection URL; a cluster's nodes separated by commas "
        "(connections fail over between them).",
    )
    db: str = Field(default="balsam", description="MongoDB database name.")
    namespace: str = Field(default="balsam", description="Prefix of every RabbitMQ name.")
    queue_type: Literal["classic", "quorum"] = Field(
        default="classic",
        description="Type of the durable RabbitMQ queues: `quorum` (replicated over a "
        "cluster's nodes, recommended in production) or `classic` (one node). Chosen when a "
        "namespace is first used: RabbitMQ refuses to redeclare a queue as another type.",
    )
    stack_dir: Path = Field(
        default_factory=_default_stack_dir,
        description="Where `balsam-mq up` keeps mongod's data, log and pid.",
    )
    mongod: Path | None = Field(default=None, description="mongod binary used by `up`.")
    mongod_port: int = Field(default=27017, ge=1, le=65535, description="Port of `up`'s mongod.")
    replica_set: str = Field(default="rs0", description="Replica set name of `up`'s mongod.")
    prefetch: int = Field(default=200, ge=1, le=65535, description="Messages a consumer holds.")
    batch_window_ms: int = Field(
        default=20,
        ge=0,
        le=60_000,
        description="The longest a consumer keeps gathering a batch while messages keep "
        "arriving (a lone message is handled at once).",
    )
    max_attempts: int = Field(
        default=5, ge=1, le=1000, description="Failed handlings before a message is parked."
    )
    log_level: str = Field(default="INFO", description="Python logging level.")
    gateway_url: str | None = Field(
        default=None,
        description="When set, the SDK and CLI reach balsam_mq through this HTTP gateway "
        "(https://...) instead of MongoDB and RabbitMQ.",
    )
    token: str | None = Field(
        default=None,
        description="The gateway token; by default the one `balsam-mq login` stored for "
        "the gateway's URL.",
    )
    credentials: Path = Field(
        default_factory=lambda: Path.home() / ".balsam_mq" / "credentials.json",
        description="Where `balsam-mq login` keeps tokens (readable by their owner only).",
    )

    @field_validator("mongodb_url")
    @classmethod
    def _mongodb_scheme(cls, v: str) -> str:
        if not v.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        return v

    @field_validator("amqp_url")
    @classmethod
    def _amqp_scheme(cls, v: str) -> str:
        split_urls(v)
        return v

    @field_validator("gateway_url")
    @classmethod
    def _gateway_scheme(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// on a trusted network)")
        return v.strip().rstrip("/")

    @field_validator("namespace", "db")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "_-" for c in v):
            raise ValueError("must be non-empty and contain only letters, digits, '_' and '-'")
        return v

    @property
    def quorum(self) -> bool:
        """Whether the durable queues are quorum queues."""
        return self.queue_type == "quorum"

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        levels = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
        if v.upper() not in levels:
            raise ValueError(f"must be one of {', '.join(sorted(levels))}")
        return v.upper()


def split_urls(value: str) -> list[str]:
    """The RabbitMQ node addresses of ``value`` (``BALSAM_AMQP_URL``: one URL, or a
    cluster's nodes separated by commas)."""
    urls = [u.strip() for u in value.split(",") if u.strip()]
    for url in urls:
        if not url.startswith(("amqp://", "amqps://")):
            raise ValueError(f"{redact_url(url)!r} must start with amqp:// or amqps://")
    if not urls:
        raise ValueError("no RabbitMQ address given")
    return urls


def redact_url(url: str) -> str:
    """``url`` (or each of a comma-separated list) without its password, for messages."""
    if "," in url:
        return ",".join(redact_url(part) for part in url.split(","))
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment (plus explicit overrides).

    A malformed value raises :class:`ConfigError` naming the environment variable.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise invalid_settings(
            "invalid setting", exc, key=lambda field: ENV_PREFIX + field.upper()
        ) from None

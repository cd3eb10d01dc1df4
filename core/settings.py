"""One settings object, read from ``VAD_*`` environment variables.

Defaults run everything embedded under ``./data`` (local object store, in-process vector index);
setting ``VAD_QDRANT_URL`` or ``VAD_S3_ENDPOINT`` switches to servers without code changes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

ENV_PREFIX = "VAD_"

#: Values that must never reach a server as credentials: the ``.env.example`` placeholders and
#: MinIO's well-known default.
PLACEHOLDER_PREFIX = "change-me"
KNOWN_DEFAULT_SECRETS = frozenset({"minioadmin", "changeme", "password", "secret"})


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""


class Settings(BaseModel):
    """Configuration for every part of the dashboard (CLI, app, benchmarks)."""

    model_config = ConfigDict(frozen=True, extra="ignore", protected_namespaces=())

    data_dir: Path = Path("data")

    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_shards: int = Field(1, ge=1, le=512)
    qdrant_replicas: int = Field(1, ge=1, le=16)

    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_bucket: str = "vad-images"
    s3_secure: bool | None = None
    s3_region: str | None = None

    model: str = "auto"
    model_weights: Path | None = None
    device: str = "auto"
    #: Forward-pass arithmetic: auto is fp16 autocast on CUDA and fp32 on a CPU.
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"

    max_pixels: int = Field(100_000_000, gt=0)
    max_file_mb: float = Field(64.0, gt=0)
    #: Images per forward pass; unset: 32 on a CPU, 256 on a GPU.
    batch_size: int | None = Field(None, gt=0, le=4096)
    #: Ingest worker processes (decode, hashes, thumbnail, model input); unset: one per core.
    ingest_workers: int | None = Field(None, ge=1, le=512)
    phash_threshold: int = Field(8, ge=0, le=64)

    allow_registration: bool = True
    admin_user: str | None = None
    admin_password: SecretStr | None = None
    cookie_key: SecretStr | None = None

    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_address: str = "0.0.0.0"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator(
        "qdrant_url",
        "qdrant_api_key",
        "s3_endpoint",
        "s3_access_key",
        "s3_secret_key",
        "s3_secure",
        "s3_region",
        "model_weights",
        "admin_user",
        "admin_password",
        "cookie_key",
        "metrics_port",
        "batch_size",
        "ingest_workers",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("qdrant_url")
    @classmethod
    def _check_qdrant_url(cls, value: str | None) -> str | None:
        if value is None or value == ":memory:":
            return value
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"must be an http(s) URL such as http://qdrant:6333, got {value!r}")
        return value

    @field_validator("s3_endpoint")
    @classmethod
    def _check_s3_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parsed = urlparse(value if "://" in value else f"//{value}")
        if parsed.scheme not in ("", "http", "https") or not parsed.hostname or parsed.path not in ("", "/"):
            raise ValueError(f"must be host:port or an http(s) URL without a path, got {value!r}")
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        base = value.split(":", 1)[0]
        if base not in ("auto", "cpu", "cuda", "mps"):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
        return value

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a model, e.g. auto, ViT-B-32:openai or efficientnet-lite0")
        return value.strip()

    @field_validator("model_weights")
    @classmethod
    def _check_weights(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("admin_password")
    @classmethod
    def _check_admin_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 8:
            raise ValueError("must have at least 8 characters")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("precision", mode="before")
    @classmethod
    def _lower_precision(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        for name in ("qdrant_api_key", "s3_access_key", "s3_secret_key", "admin_password", "cookie_key"):
            value = getattr(self, name)
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if text and (text.lower().startswith(PLACEHOLDER_PREFIX) or text.lower() in KNOWN_DEFAULT_SECRETS):
                raise ValueError(
                    f"{ENV_PREFIX}{name.upper()} is still a placeholder or a well-known default: "
                    "set a real secret (see .env.example)"
                )
        return self

    @model_validator(mode="after")
    def _check_s3_credentials(self) -> Settings:
        if self.s3_endpoint and not (self.s3_access_key and self.s3_secret_key):
            missing = "S3_ACCESS_KEY" if not self.s3_access_key else "S3_SECRET_KEY"
            raise ValueError(f"{ENV_PREFIX}{missing} is required when {ENV_PREFIX}S3_ENDPOINT is set")
        return self

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)

    @property
    def uses_s3(self) -> bool:
        return self.s3_endpoint is not None

    @property
    def uses_qdrant_server(self) -> bool:
        return self.qdrant_url is not None

    def describe(self) -> dict[str, str]:
        """Human-readable settings with secrets masked, for `info` and the app's status view."""
        shown: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********"
            shown[f"{ENV_PREFIX}{name.upper()}"] = "" if value is None else str(value)
        return shown


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from ``env`` (default: the process environment), raising SettingsError."""
    source = os.environ if env is None else env
    values: dict[str, object] = {
        key[len(ENV_PREFIX) :].lower(): val for key, val in source.items() if key.startswith(ENV_PREFIX)
    }
    values.update(overrides)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        variable = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{variable}: {message}" if field else message)
    return "Invalid configuration: " + "; ".join(lines)

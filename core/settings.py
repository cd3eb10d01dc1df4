"""One settings object, read from ``VAD_*`` environment variables.

Defaults run everything embedded under ``./data`` (local object store, in-process vector index);
setting ``VAD_QDRANT_URL`` or ``VAD_S3_ENDPOINT`` switches to servers without code changes.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

ENV_PREFIX = "VAD_"

#: The ``.env.example`` placeholders start with this.
PLACEHOLDER_PREFIX = "change-me"
#: Secrets shorter than this are refused (the admin password has MIN_ADMIN_PASSWORD_LENGTH).
MIN_SECRET_LENGTH = 12
MIN_ADMIN_PASSWORD_LENGTH = 8
#: Words that make a secret guessable: refused alone, or with digits and symbols around them
#: ("minioadmin123", "Password1!", "admin2024"), compared case-insensitively. The list holds the
#: defaults of the services this app talks to (MinIO, streamlit-authenticator's examples) and
#: the most common passwords. Secrets of only digits and symbols are refused as well.
COMMON_SECRET_WORDS = frozenset(
    {
        "abc", "abcdef", "abcdefgh", "admin", "administrator", "baseball", "changeme", "default",
        "dragon", "football", "guest",
        "iloveyou", "letmein", "login", "master", "minio", "minioadmin", "monkey", "p@ssw0rd",
        "p@ssword", "pass", "passw0rd", "password", "qdrant", "qwerty", "qwertyuiop",
        "random_signature_key", "root", "secret", "some_key", "some_signature_key", "streamlit",
        "sunshine", "test", "user", "welcome",
    }
)  # fmt: skip
_DECORATION = re.compile(r"^[\W\d_]*(?P<word>.*?)[\W\d_]*$")
_KEYS_WITH_MIN_LENGTH = frozenset({"qdrant_api_key", "s3_secret_key", "cookie_key"})
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


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
    #: Ray cluster for ``ingest --engine ray`` (``ray://host:10001`` or ``host:6379``); unset: a local one.
    ray_address: str | None = None
    phash_threshold: int = Field(8, ge=0, le=64)
    #: Where admins may import from on the Upload page: absolute folders and s3:// prefixes
    #: (comma-separated in VAD_IMPORT_ROOTS); empty: imports are off.
    import_roots: tuple[str, ...] = ()
    min_free_mb: float = Field(256.0, ge=0)
    #: Days deleted images stay in the trash (restorable) before they are removed for good.
    trash_days: float = Field(7.0, ge=0, le=3650)

    allow_registration: bool = True
    admin_user: str | None = None
    admin_password: SecretStr | None = None
    cookie_key: SecretStr | None = None
    session_hours: float = Field(12.0, gt=0, le=24 * 30)

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
        "ray_address",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("import_roots", mode="before")
    @classmethod
    def _split_import_roots(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        for root in value if isinstance(value, list | tuple) else []:
            if not (str(root).startswith("s3://") or Path(str(root)).is_absolute()):
                raise ValueError(f"each entry must be an absolute folder or an s3:// prefix, got {root!r}")
        return value

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
        if not _DEVICE_RE.fullmatch(value):
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
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_PASSWORD_LENGTH:
            raise ValueError(f"must have at least {MIN_ADMIN_PASSWORD_LENGTH} characters")
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
    def _refuse_weak_secrets(self) -> Settings:
        """Placeholders and common words anywhere; short keys where a machine holds the secret."""
        for name in ("qdrant_api_key", "s3_access_key", "s3_secret_key", "admin_password", "cookie_key"):
            value = getattr(self, name)
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            variable = f"{ENV_PREFIX}{name.upper()}"
            if text and is_guessable_secret(text):
                raise ValueError(
                    f"{variable} is still a placeholder or a well-known default: set a real secret (see .env.example)"
                )
            if text and name in _KEYS_WITH_MIN_LENGTH and len(text) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"{variable} is too short: use a random secret of {MIN_SECRET_LENGTH} characters or more"
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
    def min_free_bytes(self) -> int:
        return int(self.min_free_mb * 1024 * 1024)

    @property
    def uses_s3(self) -> bool:
        return self.s3_endpoint is not None

    @property
    def uses_qdrant_server(self) -> bool:
        return self.qdrant_url is not None

    def describe(self) -> dict[str, str]:
        """Human-readable settings with secrets masked (also inside URLs), for `info` and Status."""
        shown: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********"
            elif isinstance(value, tuple):
                value = ", ".join(value)
            shown[f"{ENV_PREFIX}{name.upper()}"] = "" if value is None else mask_url_credentials(str(value))
        return shown


def is_guessable_secret(text: str) -> bool:
    """A placeholder, only digits and symbols, or a common word with only digits and symbols around it."""
    lowered = text.strip().lower()
    if lowered.startswith(PLACEHOLDER_PREFIX):
        return True
    word = _DECORATION.fullmatch(lowered)["word"]  # the pattern matches any text
    return not word or word in COMMON_SECRET_WORDS


_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<user>[^/\s:@]*):(?P<password>[^/\s@]+)@", re.I)


def mask_url_credentials(text: str) -> str:
    """``text`` with every password inside a URL masked: ``http://user:***@host``."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def check_data_dir(data_dir: Path) -> None:
    """Create the data folder if needed and prove it writable, else SettingsError naming VAD_DATA_DIR."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SettingsError(f"{ENV_PREFIX}DATA_DIR: cannot use {data_dir} as the data folder ({reason})") from exc


def check_device(device: str) -> None:
    """SettingsError naming VAD_DEVICE when the device it names is not on this machine."""
    if device in ("auto", "cpu"):
        return
    import torch  # only here: settings load without it

    if device == "mps":
        if not torch.backends.mps.is_available():
            raise SettingsError(f"{ENV_PREFIX}DEVICE=mps: no Apple MPS device is available")
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise SettingsError(f"{ENV_PREFIX}DEVICE={device}: no CUDA device is available")
    number = int(device.partition(":")[2] or 0)
    if number >= count:
        raise SettingsError(f"{ENV_PREFIX}DEVICE={device}: only {count} CUDA device(s) (cuda:0 to cuda:{count - 1})")


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

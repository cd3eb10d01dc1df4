"""core.settings: VAD_* variables, validation errors that name the variable, masked secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings, SettingsError, load_settings, mask_url_credentials


def test_defaults_run_everything_embedded() -> None:
    settings = load_settings(env={})
    assert settings.data_dir == Path("data")
    assert settings.model == "auto"
    assert settings.device == "auto"
    assert settings.s3_bucket == "vad-images"
    assert not settings.uses_s3
    assert not settings.uses_qdrant_server
    assert settings.max_file_bytes == 64 * 1024 * 1024


def test_every_variable_is_parsed(tmp_path: Path) -> None:
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"not really weights")
    env = {
        "VAD_DATA_DIR": str(tmp_path / "data"),
        "VAD_QDRANT_URL": "http://qdrant:6333",
        "VAD_QDRANT_API_KEY": "qdrant-secret-7f3k",  # 12+ characters: shorter keys are refused
        "VAD_S3_ENDPOINT": "https://s3.example.com",
        "VAD_S3_ACCESS_KEY": "AKIA-ACCESS",
        "VAD_S3_SECRET_KEY": "s3-secret-9q2w",
        "VAD_S3_BUCKET": "my-bucket",
        "VAD_S3_SECURE": "false",
        "VAD_MODEL": "ViT-B-16:laion2b_s34b_b88k",
        "VAD_MODEL_WEIGHTS": str(weights),
        "VAD_DEVICE": "cuda:1",
        "VAD_BATCH_SIZE": "8",
        "VAD_SESSION_HOURS": "1.5",
        "NOT_OURS": "ignored",
    }
    settings = load_settings(env=env)
    assert settings.data_dir == tmp_path / "data"
    assert settings.qdrant_url == "http://qdrant:6333"
    assert settings.qdrant_api_key is not None
    assert settings.qdrant_api_key.get_secret_value() == "qdrant-secret-7f3k"
    assert settings.s3_endpoint == "https://s3.example.com"
    assert settings.s3_access_key == "AKIA-ACCESS"
    assert settings.s3_secret_key is not None
    assert settings.s3_secret_key.get_secret_value() == "s3-secret-9q2w"
    assert settings.s3_bucket == "my-bucket"
    assert settings.s3_secure is False
    assert settings.model == "ViT-B-16:laion2b_s34b_b88k"
    assert settings.model_weights == weights
    assert settings.device == "cuda:1"
    assert settings.batch_size == 8
    assert settings.session_hours == 1.5
    assert settings.uses_s3
    assert settings.uses_qdrant_server


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("1", True), ("no", False), ("0", False)])
def test_s3_secure_accepts_boolean_words(text: str, expected: bool) -> None:
    assert load_settings(env={"VAD_S3_SECURE": text}).s3_secure is expected


def test_reads_the_process_environment_and_keyword_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VAD_MODEL", "efficientnet-lite0")
    monkeypatch.setenv("VAD_DEVICE", "cpu")
    settings = load_settings(data_dir=tmp_path, model="tiny:random")
    assert settings.model == "tiny:random"  # the override wins
    assert settings.device == "cpu"  # from os.environ
    assert settings.data_dir == tmp_path


def test_blank_server_settings_mean_embedded() -> None:
    settings = load_settings(env={"VAD_QDRANT_URL": "  ", "VAD_S3_ENDPOINT": ""})
    assert not settings.uses_qdrant_server
    assert not settings.uses_s3


def test_qdrant_memory_mode_is_accepted() -> None:
    assert load_settings(env={"VAD_QDRANT_URL": ":memory:"}).qdrant_url == ":memory:"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"VAD_S3_SECURE": "maybe"}, "VAD_S3_SECURE"),
        ({"VAD_QDRANT_URL": "ftp://x"}, "VAD_QDRANT_URL"),
        ({"VAD_QDRANT_URL": "qdrant:6333"}, "VAD_QDRANT_URL"),
        ({"VAD_DEVICE": "tpu"}, "VAD_DEVICE"),
        ({"VAD_S3_ENDPOINT": "127.0.0.1:9000"}, "VAD_S3_ACCESS_KEY"),
        ({"VAD_S3_ENDPOINT": "127.0.0.1:9000", "VAD_S3_ACCESS_KEY": "a"}, "VAD_S3_SECRET_KEY"),
        (
            {"VAD_S3_ENDPOINT": "http://h:9000/path", "VAD_S3_ACCESS_KEY": "a", "VAD_S3_SECRET_KEY": "b"},
            "VAD_S3_ENDPOINT",
        ),
        ({"VAD_MODEL_WEIGHTS": "/definitely/missing/weights.pt"}, "VAD_MODEL_WEIGHTS"),
        ({"VAD_MODEL": "   "}, "VAD_MODEL"),
        ({"VAD_BATCH_SIZE": "0"}, "VAD_BATCH_SIZE"),
        ({"VAD_BATCH_SIZE": "many"}, "VAD_BATCH_SIZE"),
        ({"VAD_MAX_PIXELS": "-1"}, "VAD_MAX_PIXELS"),
        ({"VAD_PHASH_THRESHOLD": "65"}, "VAD_PHASH_THRESHOLD"),
        ({"VAD_METRICS_PORT": "70000"}, "VAD_METRICS_PORT"),
        ({"VAD_METRICS_PORT": "http"}, "VAD_METRICS_PORT"),
        ({"VAD_LOG_LEVEL": "loud"}, "VAD_LOG_LEVEL"),
        ({"VAD_LOG_FORMAT": "xml"}, "VAD_LOG_FORMAT"),
        ({"VAD_QDRANT_SHARDS": "0"}, "VAD_QDRANT_SHARDS"),
        ({"VAD_QDRANT_REPLICAS": "0"}, "VAD_QDRANT_REPLICAS"),
    ],
)
def test_invalid_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(env=env)


def test_s3_endpoint_without_keys_names_both_variables() -> None:
    with pytest.raises(SettingsError) as excinfo:
        load_settings(env={"VAD_S3_ENDPOINT": "127.0.0.1:9000"})
    message = str(excinfo.value)
    assert "VAD_S3_ACCESS_KEY" in message
    assert "VAD_S3_ENDPOINT" in message


def test_several_errors_are_reported_together() -> None:
    with pytest.raises(SettingsError) as excinfo:
        load_settings(env={"VAD_DEVICE": "tpu", "VAD_BATCH_SIZE": "0"})
    assert "VAD_DEVICE" in str(excinfo.value)
    assert "VAD_BATCH_SIZE" in str(excinfo.value)


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VAD_QDRANT_API_KEY", "change-me-qdrant-api-key"),
        ("VAD_S3_SECRET_KEY", "CHANGE-ME-minio-password"),
        ("VAD_S3_ACCESS_KEY", "minioadmin"),
        ("VAD_ADMIN_PASSWORD", "change-me-admin-password"),
        ("VAD_COOKIE_KEY", "change-me"),
    ],
)
def test_placeholder_and_default_secrets_are_refused(variable: str, value: str) -> None:
    env = {"VAD_S3_ENDPOINT": "minio:9000", "VAD_S3_ACCESS_KEY": "app-user", "VAD_S3_SECRET_KEY": "Xq3v9-longer-secret"}
    with pytest.raises(SettingsError, match=f"{variable} is still a placeholder") as caught:
        load_settings(env={**env, variable: value})
    assert value not in str(caught.value)


def test_observability_settings_are_off_by_default_and_parsed() -> None:
    default = load_settings(env={})
    assert (default.metrics_port, default.log_format, default.log_level) == (None, "json", "INFO")
    chosen = load_settings(env={"VAD_METRICS_PORT": "9101", "VAD_LOG_FORMAT": "TEXT", "VAD_LOG_LEVEL": "debug"})
    assert (chosen.metrics_port, chosen.log_format, chosen.log_level) == (9101, "text", "DEBUG")
    assert load_settings(env={"VAD_METRICS_PORT": ""}).metrics_port is None


@pytest.mark.parametrize("variable", ["VAD_MODEL_WEIGHTS", "VAD_S3_SECURE"])
def test_blank_optional_variables_are_unset(variable: str) -> None:
    settings = load_settings(env={variable: ""})
    assert getattr(settings, variable.removeprefix("VAD_").lower()) is None


def test_describe_masks_secrets() -> None:
    settings = load_settings(
        env={
            "VAD_QDRANT_URL": "https://qdrant.example.com",
            "VAD_QDRANT_API_KEY": "qdrant-top-secret",
            "VAD_S3_ENDPOINT": "s3.example.com:9000",
            "VAD_S3_ACCESS_KEY": "visible-access-key",
            "VAD_S3_SECRET_KEY": "s3-top-secret",
            "VAD_ADMIN_PASSWORD": "admin-top-secret",
            "VAD_COOKIE_KEY": "cookie-top-secret",
        }
    )
    shown = settings.describe()
    text = repr(shown) + repr(settings) + str(settings)
    assert "qdrant-top-secret" not in text
    assert "s3-top-secret" not in text
    assert "admin-top-secret" not in text
    assert "cookie-top-secret" not in text
    assert shown["VAD_QDRANT_API_KEY"] == "********"
    assert shown["VAD_S3_SECRET_KEY"] == "********"
    assert shown["VAD_S3_ACCESS_KEY"] == "visible-access-key"
    assert shown["VAD_S3_ENDPOINT"] == "s3.example.com:9000"
    assert shown["VAD_S3_REGION"] == ""  # unset values are blank, not "None"
    # one entry per setting, each named by its environment variable
    assert set(shown) == {f"VAD_{name.upper()}" for name in Settings.model_fields}


def test_settings_are_immutable() -> None:
    settings = load_settings(env={})
    with pytest.raises(ValueError):
        settings.model = "other"  # type: ignore[misc]


# --- secrets by rule, session lifetime, device, URL credentials ---------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VAD_S3_SECRET_KEY", "minioadmin123"),
        ("VAD_S3_SECRET_KEY", "MinioAdmin-2024!"),
        ("VAD_ADMIN_PASSWORD", "Password1"),
        ("VAD_ADMIN_PASSWORD", "admin123"),
        ("VAD_ADMIN_PASSWORD", "P@ssw0rd2025"),
        ("VAD_COOKIE_KEY", "some_signature_key"),  # streamlit-authenticator's example key
        ("VAD_COOKIE_KEY", "random_signature_key"),
        ("VAD_QDRANT_API_KEY", "123456789012345"),  # digits only
        ("VAD_QDRANT_API_KEY", "qwerty!!2024!!"),
    ],
)
def test_common_secrets_are_refused_by_rule(variable: str, value: str) -> None:
    env = {"VAD_S3_ENDPOINT": "minio:9000", "VAD_S3_ACCESS_KEY": "app-user", "VAD_S3_SECRET_KEY": "Xq3v9-longer-secret"}
    with pytest.raises(SettingsError, match=f"{variable} is still a placeholder or a well-known default") as caught:
        load_settings(env={**env, variable: value})
    assert value not in str(caught.value)


@pytest.mark.parametrize("variable", ["VAD_S3_SECRET_KEY", "VAD_QDRANT_API_KEY", "VAD_COOKIE_KEY"])
def test_short_secrets_are_refused(variable: str) -> None:
    env = {"VAD_S3_ENDPOINT": "minio:9000", "VAD_S3_ACCESS_KEY": "app-user", "VAD_S3_SECRET_KEY": "Xq3v9-longer-secret"}
    short = "Xq3v9-k2pL7"  # 11 characters, nothing common about them
    with pytest.raises(SettingsError, match=f"{variable} is too short: .* 12 characters") as caught:
        load_settings(env={**env, variable: short})
    assert short not in str(caught.value)
    assert load_settings(env={**env, variable: short + "z"})  # 12 is enough


def test_strong_secrets_pass() -> None:
    settings = load_settings(
        env={
            "VAD_S3_ENDPOINT": "minio:9000",
            "VAD_S3_ACCESS_KEY": "vad-app",
            "VAD_S3_SECRET_KEY": "t7Hq-2mZx-pL9w",
            "VAD_QDRANT_URL": "http://qdrant:6333",
            "VAD_QDRANT_API_KEY": "c3f1a9e0b7d24c55",
            "VAD_COOKIE_KEY": "mYc00kie-Key-8421-zz",
            "VAD_ADMIN_PASSWORD": "Tr0mbone-Staple",
        }
    )
    assert settings.cookie_key is not None


def test_session_lifetime_defaults_to_12_hours_and_is_bounded() -> None:
    assert load_settings(env={}).session_hours == 12
    assert load_settings(env={"VAD_SESSION_HOURS": "0.25"}).session_hours == 0.25
    for bad in ("0", "-1", "721", "forever"):
        with pytest.raises(SettingsError, match="VAD_SESSION_HOURS"):
            load_settings(env={"VAD_SESSION_HOURS": bad})


@pytest.mark.parametrize("device", ["cuda:x", "cuda:", "cpu:0", "gpu"])
def test_malformed_devices_are_refused(device: str) -> None:
    with pytest.raises(SettingsError, match="VAD_DEVICE"):
        load_settings(env={"VAD_DEVICE": device})


def test_describe_masks_a_password_inside_a_url() -> None:
    shown = load_settings(env={"VAD_QDRANT_URL": "https://ops:url-pass-4f7Qx@qdrant.example.com:6333"}).describe()
    assert shown["VAD_QDRANT_URL"] == "https://ops:***@qdrant.example.com:6333"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("http://u:p4ss@h:1/x", "http://u:***@h:1/x"),
        (
            "error: could not reach https://:tok-1@q.example/ (refused)",
            "error: could not reach https://:***@q.example/ (refused)",
        ),
        ("s3://key:secret@bucket and http://plain:80", "s3://key:***@bucket and http://plain:80"),
        ("http://user@host:6333", "http://user@host:6333"),
    ],
)
def test_mask_url_credentials_also_in_log_lines(text: str, masked: str) -> None:
    from core.logs import mask

    assert mask_url_credentials(text) == masked
    assert mask(text) == masked  # every log line goes through core.logs.mask

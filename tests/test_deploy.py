"""The deployment files, checked for real: docker-compose.yml, .env.example, Dockerfile, .dockerignore.

No Docker engine is needed. The compose file is validated against the compose specification's JSON
schema (vendored in check-jsonschema) before and after interpolation with .env.example; the wiring
between compose, .env.example, the Dockerfile and ``core.settings`` is cross-checked; the image's
file layout is rebuilt from the Dockerfile's COPY lines and .dockerignore, and the image's CMD,
HEALTHCHECK and ``python -m core doctor`` are run in that layout with the image's ENV; the
requirements install step is resolved with pip's dry run.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import importlib.resources
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from helpers import free_port, serve_http
from jsonschema.validators import validator_for
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from app.healthcheck import health_url
from core.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
REQUIREMENTS = ROOT / "requirements.txt"
VENV_BIN = Path(sys.executable).parent

#: Directories the app reads at runtime (code, pages, logo/CSS, Streamlit config).
RUNTIME_DIRS = ("app", "core", "pages", "assets", ".streamlit")
#: Must never reach the build context: tests, the venv, local data, history, secrets.
NEVER_IN_IMAGE = ("tests", ".venv", "data", ".git", ".env", ".streamlit/secrets.toml")
#: Dockerfile/compose path of the model cache and of the app's data.
MODELS, DATA = "/models", "/data"


# --- compose interpolation (https://github.com/compose-spec/compose-spec/blob/main/12-interpolation.md)


class InterpolationError(ValueError):
    """Invalid ``$`` syntax, or a required variable (``${VAR:?err}`` / ``${VAR?err}``) is missing."""

    def __init__(self, message: str, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.DOTALL)


def interpolate(text: str, env: Mapping[str, str], used: set[str] | None = None) -> str:
    """Compose's rules: ``$$`` is a literal ``$``; ``$VAR``/``${VAR}`` (unset: empty);
    ``${VAR:-default}`` (unset or empty) / ``${VAR-default}`` (unset); ``${VAR:?err}`` /
    ``${VAR?err}`` fail; ``${VAR:+alt}`` / ``${VAR+alt}``; defaults may nest further expressions."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "{":
            depth, j = 0, i + 1
            while j < len(text):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    break
                j += 1
            else:
                raise InterpolationError(f"unclosed ${{ in {text!r}")
            out.append(_expand(text[i + 2 : j], env, used))
            i = j + 1
        elif match := _NAME.match(text, i + 1):
            if used is not None:
                used.add(match.group())
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            raise InterpolationError(f"invalid interpolation format in {text!r}: use $$ for a literal $")
    return "".join(out)


def _expand(expression: str, env: Mapping[str, str], used: set[str] | None) -> str:
    match = _BRACED.fullmatch(expression)
    if not match:
        raise InterpolationError(f"invalid interpolation format: ${{{expression}}}")
    name, op, arg = match["name"], match["op"], match["arg"] or ""
    if used is not None:
        used.add(name)
    value = env.get(name)
    unset = value is None
    empty = unset or value == ""
    missing = empty if op and op.startswith(":") else unset
    if op is None:
        return value or ""
    if op.endswith("-"):
        return interpolate(arg, env, used) if missing else str(value)
    if op.endswith("?"):
        if missing:
            raise InterpolationError(f"required variable {name} is missing a value: {arg}", variable=name)
        return str(value)
    return "" if missing else interpolate(arg, env, used)  # ":+" / "+"


def interpolate_tree(node: object, env: Mapping[str, str], used: set[str] | None = None) -> object:
    """Interpolate every string value of a parsed compose file (keys are left alone, as compose does)."""
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env, used) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env, used) for value in node]
    if isinstance(node, str):
        return interpolate(node, env, used)
    return node


def read_env_file(path: Path) -> dict[str, str]:
    return parse_env(path.read_text(), path.name)


def parse_env(text: str, origin: str = ".env") -> dict[str, str]:
    """A compose ``.env`` file: ``KEY=VALUE`` lines, ``#`` comments, optional quotes and ``export``."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        assert sep and _NAME.fullmatch(key), f"{origin}:{number}: not KEY=VALUE: {raw!r}"
        assert key not in values, f"{origin}:{number}: {key} is defined twice"
        if value[:1] in ("'", '"') and value.endswith(value[0]) and len(value) >= 2:
            value = value[1:-1]
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].strip()
        values[key] = value
    return values


def test_interpolation_follows_the_compose_rules() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("a $SET ${SET} $$SET $${SET}", env) == "a v v $SET ${SET}"
    assert interpolate("${UNSET}|${EMPTY}", env) == "|"
    assert interpolate("${EMPTY:-d}|${EMPTY-d}|${UNSET-d}|${SET:-d}", env) == "d||d|v"
    assert interpolate("${EMPTY:+alt}|${EMPTY+alt}|${SET:+alt}|${UNSET+alt}", env) == "|alt|alt|"
    assert interpolate("${UNSET:-${SET}-x}", env) == "v-x"
    assert interpolate("${EMPTY?ok}", env) == ""
    with pytest.raises(InterpolationError, match="set it") as caught:
        interpolate("${EMPTY:?set it}", env)
    assert caught.value.variable == "EMPTY"
    with pytest.raises(InterpolationError):
        interpolate("${UNSET?x}", env)
    for bad in ("cost: 5$", "${SET", "${1A}", "${SET:x}"):
        with pytest.raises(InterpolationError):
            interpolate(bad, env)
    used: set[str] = set()
    interpolate("${A:-${B}} $C $$D", {}, used)
    assert used == {"A", "B", "C"}


# --- shared readers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose_schema_validator():
    source = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    schema = json.loads(source.read_text(encoding="utf-8"))
    cls = validator_for(schema)  # the schema's own $schema (draft 2020-12 today)
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(validator, document: object) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(document)]


def strong_values(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with every ``change-me`` placeholder replaced by a long random secret."""
    return {k: secrets.token_urlsafe(32) if v.lower().startswith("change-me") else v for k, v in env.items()}


def placeholders(env: Mapping[str, str]) -> list[str]:
    return sorted(k for k, v in env.items() if v.lower().startswith("change-me"))


def service_env(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def requirement_pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    """``name -> version`` for every ``name==version`` line of a requirements file."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        exact = [spec.version for spec in req.specifier if spec.operator == "=="]
        if exact:
            pins[canonicalize_name(req.name)] = exact[0]
    return pins


# --- 1. docker-compose.yml against the compose specification ------------------------------------


def test_compose_file_is_valid_against_the_compose_spec(compose, compose_schema_validator) -> None:
    assert schema_errors(compose_schema_validator, compose) == []


def test_compose_file_is_valid_after_interpolation(compose, env_example, compose_schema_validator) -> None:
    for env in (env_example, strong_values(env_example)):
        resolved = interpolate_tree(compose, env)
        assert schema_errors(compose_schema_validator, resolved) == []
        assert "$" not in json.dumps(resolved["services"]["app"]), "an unresolved variable in the app service"


BREAKAGES: dict[str, tuple[Callable[[dict], None], str]] = {
    "ports as a mapping": (lambda d: d["services"]["app"].__setitem__("ports", {"8501": 8501}), "services/app/ports"),
    "unknown service key": (lambda d: d["services"]["app"].__setitem__("imagee", "x"), "services/app"),
    "unknown top-level key": (lambda d: d.__setitem__("service", {}), "<root>"),
    "bad depends_on condition": (
        lambda d: d["services"]["app"]["depends_on"]["qdrant"].__setitem__("condition", "service_ready"),
        "services/app/depends_on",
    ),
    "unknown healthcheck key": (
        lambda d: d["services"]["qdrant"]["healthcheck"].__setitem__("intervall", "10s"),
        "services/qdrant/healthcheck",
    ),
    "volumes as a string": (
        lambda d: d["services"]["app"].__setitem__("volumes", "app-data:/data"),
        "services/app/volumes",
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_compose_file_fails_validation(compose, compose_schema_validator, breakage) -> None:
    """The validation is not vacuous: each broken copy fails, at the place that was broken."""
    broken = copy.deepcopy(compose)
    mutate, where = BREAKAGES[breakage]
    mutate(broken)
    errors = schema_errors(compose_schema_validator, broken)
    assert errors, f"{breakage} passed validation"
    assert any(error.startswith(f"{where}: ") for error in errors), errors


# --- 2. wiring: compose <-> .env.example <-> Settings <-> Dockerfile ------------------------------


def test_every_compose_variable_is_in_env_example_and_none_is_unused(compose, env_example) -> None:
    used: set[str] = set()
    interpolate_tree(compose, env_example, used)
    assert used, "the compose file reads no variables at all?"
    assert sorted(used - set(env_example)) == [], "used by docker-compose.yml but not in .env.example"
    assert sorted(set(env_example) - used) == [], "in .env.example but never read by docker-compose.yml"


def test_env_example_shows_the_compose_defaults(compose, env_example) -> None:
    """Below "Optional (defaults shown)" each value equals the ``${VAR:-default}`` in the compose file."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "defaults shown" in line.lower())
    optional = parse_env("\n".join(lines[start:]))
    defaults = dict(re.findall(r"\$\{([A-Za-z_]\w*):-([^}]*)\}", COMPOSE_FILE.read_text()))
    checked = {name: (value, defaults.get(name)) for name, value in optional.items()}
    assert checked
    assert {n: v for n, v in checked.items() if v[0] != v[1]} == {}, "(.env.example value, compose default)"


def test_every_vad_variable_of_the_app_is_a_setting(compose) -> None:
    fields = {f"VAD_{name.upper()}" for name in Settings.model_fields}
    app_env = service_env(compose["services"]["app"])
    vad = {name for name in app_env if name.startswith("VAD_")}
    assert vad, "the app service sets no VAD_* variables"
    assert sorted(vad - fields) == [], "not a field of core.settings.Settings (ignored by the app)"
    assert sorted(set(app_env) - vad) == [], "the app service sets non-VAD_ variables"


SERVER_CREDENTIALS = {
    "qdrant": ["QDRANT__SERVICE__API_KEY"],
    "minio": ["MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"],
}


@pytest.mark.parametrize(("service", "variable"), [(s, v) for s, vs in SERVER_CREDENTIALS.items() for v in vs])
def test_compose_refuses_to_start_servers_without_credentials(compose, env_example, service, variable) -> None:
    """Qdrant without an API key is open; MinIO without root credentials falls back to minioadmin."""
    raw = compose["services"][service]["environment"][variable]
    match = re.fullmatch(r"\$\{(\w+):\?[^}]+\}", raw)
    assert match, f"{service}.{variable} must be ${{VAR:?message}} (required, not empty), got {raw!r}"
    name = match.group(1)
    for env in ({k: v for k, v in env_example.items() if k != name}, {**env_example, name: ""}):
        with pytest.raises(InterpolationError) as caught:
            interpolate_tree(compose, env)
        assert caught.value.variable == name


def resolved_app_env(compose: dict, env: Mapping[str, str]) -> dict[str, str]:
    return service_env(interpolate_tree(compose, env)["services"]["app"])


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(str(DOCKERFILE))


def container_env(dockerfile: DockerfileParser, compose: dict, env: Mapping[str, str]) -> dict[str, str]:
    """What the app's process sees: the image's ENV, overridden by the compose service's environment."""
    return {**dockerfile.envs, **resolved_app_env(compose, env)}


def test_env_example_placeholders_exist(env_example) -> None:
    assert placeholders(env_example), ".env.example has no change-me placeholders left to check"


@pytest.mark.parametrize(
    "placeholder", ["QDRANT_API_KEY", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "VAD_ADMIN_PASSWORD"]
)
def test_the_app_refuses_each_env_example_placeholder(compose, env_example, dockerfile, placeholder) -> None:
    """Every other placeholder replaced by a strong value: the app still refuses this one, by name."""
    assert placeholder in placeholders(env_example)
    env = {**strong_values(env_example), placeholder: env_example[placeholder]}
    app_env = container_env(dockerfile, compose, env)
    receivers = sorted(k for k, v in app_env.items() if v == env_example[placeholder] and k.startswith("VAD_"))
    assert receivers, f"{placeholder} does not reach the app"
    with pytest.raises(SettingsError) as caught:
        load_settings(app_env)
    assert any(name in str(caught.value) for name in receivers), str(caught.value)
    assert "placeholder" in str(caught.value)


def test_the_app_refuses_env_example_as_is(compose, env_example, dockerfile) -> None:
    with pytest.raises(SettingsError, match=r"VAD_\w+ is still a placeholder"):
        load_settings(container_env(dockerfile, compose, env_example))


def test_the_app_accepts_strong_values_and_is_wired_to_the_servers(compose, env_example, dockerfile) -> None:
    env = strong_values(env_example)
    resolved = interpolate_tree(compose, env)
    settings = load_settings(container_env(dockerfile, compose, env))
    services = resolved["services"]
    assert settings.qdrant_api_key is not None and settings.s3_secret_key is not None
    assert settings.qdrant_api_key.get_secret_value() == services["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"]
    assert settings.s3_access_key == services["minio"]["environment"]["MINIO_ROOT_USER"]
    assert settings.s3_secret_key.get_secret_value() == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    assert urlparse(settings.qdrant_url).hostname == "qdrant" and "qdrant" in services
    assert urlparse(settings.s3_endpoint).hostname == "minio" and "minio" in services
    assert settings.admin_user == env["VAD_ADMIN_USER"] and settings.admin_password is not None
    assert str(settings.data_dir) == DATA


def _image_tag(image: str) -> tuple[str, str | None, str | None]:
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    return name, tag, digest or None


def test_server_images_are_pinned(compose) -> None:
    pulled = {name: svc["image"] for name, svc in compose["services"].items() if "build" not in svc}
    assert {"qdrant", "minio"} <= set(pulled)
    for name, image in pulled.items():
        _, tag, digest = _image_tag(image)
        assert digest or (tag and tag != "latest" and re.search(r"\d", tag)), f"{name}: {image} is not pinned"


def _named_volume(service: dict, target: str) -> str | None:
    for mount in service.get("volumes", []):
        if isinstance(mount, dict):
            source, mount_target = mount.get("source"), mount.get("target")
            kind = mount.get("type", "volume")
        else:
            source, mount_target = mount.split(":")[:2]
            kind = "bind" if source.startswith((".", "/", "~", "$")) else "volume"
        if mount_target.rstrip("/") == target and kind == "volume":
            return source
    return None


def test_state_lives_in_named_volumes(compose, dockerfile) -> None:
    services, declared = compose["services"], set(compose.get("volumes") or {})
    minio_command = services["minio"]["command"]
    minio_command = shlex.split(minio_command) if isinstance(minio_command, str) else minio_command
    minio_data = minio_command[minio_command.index("server") + 1]
    wanted = {
        ("qdrant", "/qdrant/storage"): "qdrant storage",
        ("minio", minio_data): "minio data (the path `minio server` is given)",
        ("app", DATA): "app data",
        ("app", MODELS): "model cache",
    }
    for (service, target), what in wanted.items():
        source = _named_volume(services[service], target)
        assert source, f"{what}: no named volume at {service}:{target}"
        assert source in declared, f"{what}: volume {source} is not declared under top-level volumes"
    for volume in dockerfile_volumes(dockerfile):
        assert _named_volume(services["app"], volume), f"the image's VOLUME {volume} gets no named volume"


def test_app_waits_for_healthy_servers(compose) -> None:
    services = compose["services"]
    depends = services["app"]["depends_on"]
    assert isinstance(depends, dict), "depends_on as a list does not wait for health"
    for server in ("qdrant", "minio"):
        assert depends[server]["condition"] == "service_healthy"
        assert services[server].get("healthcheck", {}).get("test"), f"{server} has no healthcheck to wait for"
        assert not services[server]["healthcheck"].get("disable")


def test_app_port_is_the_image_port(compose, env_example, dockerfile) -> None:
    ports = interpolate_tree(compose, env_example)["services"]["app"]["ports"]
    container_ports = {str(p).rsplit(":", 1)[-1].split("/")[0] for p in ports}
    image_port = dockerfile.envs["STREAMLIT_SERVER_PORT"]
    assert container_ports == {image_port}
    assert image_port in instruction_values(dockerfile, "EXPOSE")[0].split()


# --- 3. Dockerfile --------------------------------------------------------------------------------


def instructions(dockerfile: DockerfileParser) -> list[dict]:
    """The last stage's instructions (comments left out)."""
    items = [i for i in dockerfile.structure if i["instruction"] != "COMMENT"]
    start = max(n for n, i in enumerate(items) if i["instruction"] == "FROM")
    return items[start:]


def instruction_values(dockerfile: DockerfileParser, name: str) -> list[str]:
    return [i["value"] for i in instructions(dockerfile) if i["instruction"] == name]


def index_of(items: list[dict], predicate: Callable[[dict], bool], what: str) -> int:
    found = [n for n, item in enumerate(items) if predicate(item)]
    assert found, f"the Dockerfile has no {what}"
    return found[0]


def exec_form(value: str) -> list[str]:
    return json.loads(value) if value.lstrip().startswith("[") else shlex.split(value)


def dockerfile_volumes(dockerfile: DockerfileParser) -> list[str]:
    volumes: list[str] = []
    for value in instruction_values(dockerfile, "VOLUME"):
        volumes += [v.rstrip("/") for v in exec_form(value)]
    return volumes


@dataclass(frozen=True)
class Healthcheck:
    options: dict[str, str]
    command: list[str]


def parse_healthcheck(dockerfile: DockerfileParser) -> Healthcheck:
    values = instruction_values(dockerfile, "HEALTHCHECK")
    assert len(values) == 1, "the Dockerfile needs exactly one HEALTHCHECK"
    options, sep, command = values[0].partition("CMD")
    assert sep, f"HEALTHCHECK without CMD: {values[0]!r}"
    parsed = dict(opt.lstrip("-").split("=", 1) for opt in shlex.split(options))
    return Healthcheck(parsed, exec_form(command))


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def test_base_image_is_pinned_to_the_projects_python(dockerfile) -> None:
    tag = _image_tag(dockerfile.baseimage)[1]
    assert tag and tag != "latest", f"base image {dockerfile.baseimage} has no explicit tag"
    match = re.match(r"(\d+)\.(\d+)", tag)
    assert match, f"base image tag {tag!r} names no Python version"
    python = f"{match[1]}.{match[2]}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Version(python) in SpecifierSet(requires)


def test_requirements_are_installed_before_the_code_is_copied(dockerfile) -> None:
    items = instructions(dockerfile)

    def copies(item: dict, sources: tuple[str, ...]) -> bool:
        args = [a for a in exec_form(item["value"]) if not a.startswith("--")]
        return item["instruction"] in ("COPY", "ADD") and any(
            PurePosixPath(src).parts[:1] in [(s,) for s in sources] or src in (".", "./") for src in args[:-1]
        )

    copy_reqs = index_of(items, lambda i: copies(i, ("requirements.txt",)), "COPY of requirements.txt")
    install = index_of(items, lambda i: i["instruction"] == "RUN" and "-r requirements.txt" in i["value"], "pip -r")
    first_code = index_of(items, lambda i: copies(i, RUNTIME_DIRS), "COPY of the code")
    assert copy_reqs < install < first_code


def test_runs_as_a_non_root_user_that_owns_the_volumes(dockerfile) -> None:
    items = instructions(dockerfile)
    cmd = index_of(items, lambda i: i["instruction"] == "CMD", "CMD")
    users = [n for n, i in enumerate(items[:cmd]) if i["instruction"] == "USER"]
    assert users, "no USER before CMD: the app would run as root"
    user = items[users[-1]]["value"].split(":")[0].strip()
    assert user not in ("root", "0")
    created = [i["value"] for i in items[: users[-1]] if i["instruction"] == "RUN" and "useradd" in i["value"]]
    assert any(re.search(rf"useradd\b[^&;]*\b{re.escape(user)}\b", run) for run in created), f"{user} is not created"
    uid = re.search(r"--uid\s+(\d+)", " ".join(created))
    assert uid is None or int(uid.group(1)) != 0
    chowned = " ".join(
        m.group(1) for run in created for m in re.finditer(rf"chown\s+(?:-R\s+)?{user}(?::\w+)?\s+([^&;]+)", run)
    ).split()
    for volume in dockerfile_volumes(dockerfile):
        assert volume in chowned, f"{volume} is not owned by {user}: the app could not write to it"


def test_healthcheck_runs_the_script_within_its_timeout(dockerfile) -> None:
    check = parse_healthcheck(dockerfile)
    assert check.command == ["python", "app/healthcheck.py"]
    workdir = instruction_values(dockerfile, "WORKDIR")[-1]
    assert str(PurePosixPath(workdir) / check.command[1]) in image_layout(dockerfile)
    assert seconds(check.options.get("start-period", "0s")) >= 60, "the first model load needs a start period"


def test_volumes_hold_the_model_cache_and_the_data(dockerfile) -> None:
    volumes = dockerfile_volumes(dockerfile)
    assert MODELS in volumes and DATA in volumes
    envs = dockerfile.envs
    assert envs["HF_HOME"].rstrip("/") == MODELS
    assert PurePosixPath(envs["TORCH_HOME"]).is_relative_to(MODELS)
    assert envs["VAD_DATA_DIR"].rstrip("/") == DATA


def test_torch_pins_match_requirements(dockerfile) -> None:
    pins = requirement_pins()
    runs = [v for v in instruction_values(dockerfile, "RUN") if "pip install" in v]
    in_dockerfile = dict(re.findall(r"\b(torch|torchvision)==([\w.+-]+)", " ".join(runs)))
    assert set(in_dockerfile) == {"torch", "torchvision"}, "the Dockerfile should install the CPU torch pair"
    for name, version in in_dockerfile.items():
        assert name in pins, f"requirements.txt does not pin {name}"
        assert Version(version) == Version(pins[name]), f"{name}: Dockerfile {version}, requirements {pins[name]}"


# .dockerignore, the way Docker reads it: patterns relative to the context root, `*` within a path
# element, `**` across elements, `!` re-includes, the last matching pattern wins, and a path is
# excluded when it or one of its parent directories matches.


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i:]:
            end = pattern.index("]", i)
            out.append("[" + pattern[i + 1 : end].replace("!", "^", 1) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def dockerignore_rules(path: Path = DOCKERIGNORE) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).strip("/")
        rules.append((negate, _glob_regex(pattern)))
    return rules


def ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = PurePosixPath(relative).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negate, regex in rules:
        if any(regex.fullmatch(c) for c in candidates):
            result = not negate
    return result


def test_dockerignore_matching() -> None:
    rules = [(False, _glob_regex("**/__pycache__")), (False, _glob_regex("docs")), (False, _glob_regex("*.md"))]
    rules.append((True, _glob_regex("README.md")))
    assert ignored("core/__pycache__/x.pyc", rules) and ignored("__pycache__", rules)
    assert ignored("docs/deployment.md", rules) and ignored("NOTES.md", rules)
    assert not ignored("README.md", rules) and not ignored("core/notes.md", rules) and not ignored("core/x.py", rules)


def context_files() -> Iterator[str]:
    """Every file of the build context, relative to the repository root (.dockerignore applied)."""
    rules = dockerignore_rules()
    for directory, subdirs, files in os.walk(ROOT):
        rel_dir = Path(directory).relative_to(ROOT).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        subdirs[:] = [d for d in subdirs if not ignored(rel_dir + d, rules)]
        for name in files:
            if not ignored(rel_dir + name, rules):
                yield rel_dir + name


def image_layout(dockerfile: DockerfileParser) -> dict[str, Path]:
    """The image's files that COPY puts there: image path -> repository file (.dockerignore applied)."""
    context = sorted(context_files())
    layout: dict[str, Path] = {}
    workdir = PurePosixPath("/")
    for item in instructions(dockerfile):
        if item["instruction"] == "WORKDIR":
            workdir = workdir / item["value"].strip()
        if item["instruction"] not in ("COPY", "ADD"):
            continue
        args = [a for a in exec_form(item["value"]) if not a.startswith("--")]
        assert all("://" not in a for a in args), "ADD of a URL"
        *sources, dest = args
        target = workdir / dest
        into_dir = dest.endswith("/") or len(sources) > 1
        for source in sources:
            src = PurePosixPath(os.path.normpath(source)).as_posix().strip("/")
            src = "" if src == "." else src
            assert src == "" or (ROOT / src).exists(), f"COPY {source}: not in the repository"
            for rel in context:
                if rel == src:
                    layout[str(target / PurePosixPath(rel).name if into_dir else target)] = ROOT / rel
                elif src == "" or rel.startswith(src + "/"):
                    layout[str(target / rel[len(src) :].lstrip("/"))] = ROOT / rel
    return layout


def test_everything_the_app_needs_is_copied_and_nothing_else(dockerfile) -> None:
    layout = image_layout(dockerfile)
    workdir = PurePosixPath(instruction_values(dockerfile, "WORKDIR")[-1])
    rules = dockerignore_rules()
    for directory in RUNTIME_DIRS:
        assert not ignored(directory, rules), f".dockerignore excludes {directory}"
        for path in (ROOT / directory).rglob("*"):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and "__pycache__" not in path.parts and rel != ".streamlit/secrets.toml":
                assert str(workdir / rel) in layout, f"{rel} is not in the image at {workdir / rel}"
    for name in NEVER_IN_IMAGE:
        assert ignored(name, rules), f".dockerignore must exclude {name}"
        assert not any(str(p).startswith(str(ROOT / name) + os.sep) or p == ROOT / name for p in layout.values())


# --- 4. running the image's commands in its layout ------------------------------------------------


@dataclass
class Image:
    """The image's files, rebuilt in a temporary directory, and the environment of its process."""

    workdir: Path
    env: dict[str, str]
    cmd: list[str]
    cmd_exec_form: bool
    healthcheck: Healthcheck


@pytest.fixture(scope="module")
def image(dockerfile, tmp_path_factory) -> Image:
    """The COPY'd files under ``root/<WORKDIR>``, the Dockerfile's ENV with each VOLUME mapped under
    ``root``, the venv's executables first on PATH (the image's ``python``/``streamlit``)."""
    root = tmp_path_factory.mktemp("image")
    for image_path, source in image_layout(dockerfile).items():
        target = root / image_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    volume_map = {volume: root / volume.lstrip("/") for volume in dockerfile_volumes(dockerfile)}
    for path in volume_map.values():
        path.mkdir(parents=True, exist_ok=True)
    env = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(root / "home")}
    for name, value in dockerfile.envs.items():
        for volume, local in volume_map.items():
            if value == volume or value.startswith(volume + "/"):
                value = str(local) + value[len(volume) :]
        env[name] = value
    env.update({"STREAMLIT_SERVER_ADDRESS": "127.0.0.1", "VAD_MODEL": "tiny:random", "VAD_DEVICE": "cpu"})
    workdir = root / instruction_values(dockerfile, "WORKDIR")[-1].lstrip("/")
    cmd = instruction_values(dockerfile, "CMD")[-1]
    return Image(workdir, env, exec_form(cmd), cmd.lstrip().startswith("["), parse_healthcheck(dockerfile))


def run_healthcheck(image: Image, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        image.healthcheck.command,
        cwd=image.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds(image.healthcheck.options["timeout"]),  # Docker's own limit
    )


@pytest.fixture
def image_env(image: Image, tmp_path: Path) -> dict[str, str]:
    return {**image.env, "STREAMLIT_SERVER_PORT": str(free_port()), "VAD_DATA_DIR": str(tmp_path / "data")}


def _stop_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.timeout(180)
def test_image_cmd_serves_and_the_healthcheck_tells(image: Image, image_env: dict[str, str], tmp_path: Path) -> None:
    assert image.cmd[:3] == ["streamlit", "run", "app/main.py"]
    assert image.cmd_exec_form, "shell-form CMD: /bin/sh is PID 1 and `docker stop`'s SIGTERM never reaches streamlit"
    url = health_url(image_env)
    log_path = tmp_path / "streamlit.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            image.cmd,
            cwd=image.workdir,
            env=image_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, f"the CMD exited with {process.returncode}: {log_path.read_text()[-3000:]}"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    break
            assert time.monotonic() < deadline, f"not serving after 90 s: {log_path.read_text()[-3000:]}"
            time.sleep(0.3)

        healthy = run_healthcheck(image, image_env)
        assert healthy.returncode == 0, healthy.stderr

        # `docker stop`: SIGTERM to PID 1 (the exec-form CMD), SIGKILL after 10 s.
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        sick = run_healthcheck(image, image_env)
        assert sick.returncode == 1
        assert sick.stderr.startswith("unhealthy:") and url in sick.stderr
    finally:
        _stop_group(process)


class _Answer(http.server.BaseHTTPRequestHandler):
    body = b"ok"

    def do_GET(self) -> None:
        self.send_response(200 if self.path.endswith("/_stcore/health") else 404)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def http_server(body: bytes) -> contextlib.AbstractContextManager[int]:
    return serve_http(type("Handler", (_Answer,), {"body": body}))


def test_healthcheck_follows_the_base_path_and_refuses_a_wrong_answer(image: Image) -> None:
    with http_server(b"ok") as port:
        env = {**image.env, "STREAMLIT_SERVER_PORT": str(port), "STREAMLIT_SERVER_BASE_URL_PATH": "/vad/"}
        assert run_healthcheck(image, env).returncode == 0
    with http_server(b"not ok") as port:
        done = run_healthcheck(image, {**image.env, "STREAMLIT_SERVER_PORT": str(port)})
        assert done.returncode == 1 and "unhealthy" in done.stderr and "'not ok'" in done.stderr


@pytest.mark.timeout(60)
def test_healthcheck_gives_up_before_dockers_timeout(image: Image) -> None:
    """A hung app (connection accepted, never answered): the script reports it within Docker's timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        env = {**image.env, "STREAMLIT_SERVER_PORT": str(sock.getsockname()[1])}
        done = run_healthcheck(image, env)  # raises TimeoutExpired past the HEALTHCHECK --timeout
    assert done.returncode == 1 and "unhealthy" in done.stderr and "timed out" in done.stderr


@pytest.mark.timeout(300)
def test_doctor_passes_in_the_image_layout(image: Image, image_env: dict[str, str]) -> None:
    """README: `docker compose exec app python -m core doctor`. The image's files alone suffice."""
    done = subprocess.run(
        ["python", "-m", "core", "doctor"],
        cwd=image.workdir,
        env=image_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all checks passed" in done.stdout


_APPTEST = """
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("app/main.py", default_timeout=180)
at.run()
at.text_input[0].input(sys.argv[1])
at.text_input[1].input(sys.argv[2])
next(b for b in at.button if b.label == "Sign in").click()
at.run()
assert at.session_state["authentication_status"] is True, [e.value for e in at.error]
import os
for page in sorted(os.listdir("pages")):
    if page.endswith(".py"):
        at.switch_page(f"../pages/{page}")
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        errors = [e.value for e in at.error if "random weights" not in e.value]  # tiny:random says so
        assert not errors, (page, errors)
        print("rendered", page, [t.value for t in at.title])
"""


@pytest.mark.timeout(420)
def test_every_page_renders_in_the_image_layout(image: Image, image_env: dict[str, str]) -> None:
    """The first admin from VAD_ADMIN_USER/VAD_ADMIN_PASSWORD (as compose passes them) signs in and
    opens every page, with only the image's files on disk."""
    password = secrets.token_urlsafe(16)
    env = {**image_env, "VAD_ADMIN_USER": "ops", "VAD_ADMIN_PASSWORD": password}
    done = subprocess.run(
        ["python", "-c", _APPTEST, "ops", password],
        cwd=image.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rendered = re.findall(r"^rendered (\S+)", done.stdout, re.MULTILINE)
    assert sorted(rendered) == sorted(p.name for p in (ROOT / "pages").glob("*.py"))


def test_health_url() -> None:
    assert health_url({}) == "http://127.0.0.1:8501/_stcore/health"
    assert health_url({"STREAMLIT_SERVER_PORT": "9000"}) == "http://127.0.0.1:9000/_stcore/health"
    assert health_url({"STREAMLIT_SERVER_PORT": ""}) == "http://127.0.0.1:8501/_stcore/health"
    for base in ("vad", "/vad", "/vad/", "vad/"):
        env = {"STREAMLIT_SERVER_BASE_URL_PATH": base, "STREAMLIT_SERVER_PORT": "8600"}
        assert health_url(env) == "http://127.0.0.1:8600/vad/_stcore/health"
    assert health_url({"STREAMLIT_SERVER_BASE_URL_PATH": "/a/b/"}) == "http://127.0.0.1:8501/a/b/_stcore/health"
    assert health_url({"STREAMLIT_SERVER_BASE_URL_PATH": "/"}) == "http://127.0.0.1:8501/_stcore/health"


# --- the requirements install step ------------------------------------------------------------------

_NO_NETWORK = (
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "No route to host",
    "Failed to establish a new connection",
    "NewConnectionError",
    "ConnectTimeoutError",
    "Could not resolve host",
)


@pytest.mark.timeout(600)
def test_requirements_resolve_to_the_pinned_torch(dockerfile, tmp_path: Path) -> None:
    """The image's `pip install -r requirements.txt`, as a dry run with the venv's pip."""
    report_path = tmp_path / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed"]
    command += ["--report", str(report_path), "-r", str(REQUIREMENTS)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=580)
    if done.returncode != 0:
        offline = [marker for marker in _NO_NETWORK if marker in done.stdout + done.stderr]
        if offline:
            pytest.skip(f"no network for pip ({offline[0]}): cannot resolve requirements.txt here")
        pytest.fail(f"pip could not resolve requirements.txt:\n{done.stderr[-4000:]}")
    report = json.loads(report_path.read_text())
    resolved = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}
    pins = requirement_pins()
    for name in ("torch", "torchvision"):
        assert Version(resolved[name]).public == pins[name], f"{name} resolved to {resolved[name]}"
    for name, version in pins.items():
        assert Version(resolved[name]).public == Version(version).public, f"{name} resolved to {resolved[name]}"
    tag = _image_tag(dockerfile.baseimage)[1] or ""
    assert (
        tag.startswith(report["environment"]["python_version"] + "-") or tag == report["environment"]["python_version"]
    ), f"resolved for Python {report['environment']['python_version']}, the image runs {dockerfile.baseimage}"


# --- 5. a real Compose implementation reads the file ----------------------------------------------


def compose_command() -> list[str] | None:
    """Docker's compose plugin, else the standalone docker-compose; None when neither is installed."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


@pytest.mark.skipif(
    compose_command() is None and not os.environ.get("CI"),
    reason="no docker compose / docker-compose installed (make test installs Debian's docker-compose)",
)
@pytest.mark.parametrize("with_env", [True, False], ids=["with-.env", "without-.env"])
def test_compose_config_accepts_the_file_and_demands_the_secrets(tmp_path: Path, with_env: bool) -> None:
    command = compose_command()
    assert command, "CI must have a Compose implementation (make test installs one)"
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    if with_env:
        shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    clean_env = {k: v for k, v in os.environ.items() if k not in read_env_file(ENV_EXAMPLE)}
    result = subprocess.run(
        [*command, "config"], cwd=tmp_path, env=clean_env, capture_output=True, text=True, timeout=60
    )
    if with_env:
        assert result.returncode == 0, result.stderr
        config = yaml.safe_load(result.stdout)
        app = config["services"]["app"]["environment"]
        assert app["VAD_QDRANT_URL"] == "http://qdrant:6333"
        assert app["VAD_QDRANT_API_KEY"] == config["services"]["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"]
    else:
        assert result.returncode != 0
        assert "set QDRANT_API_KEY in .env" in result.stderr or "set MINIO_ROOT" in result.stderr, result.stderr

"""The admin Status page (pages/status.py) through AppTest: checks, banner, counts, versions, access."""

from __future__ import annotations

import ast
import shutil
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
from apptest_helpers import ROOT, add_user, button, open_page, signed_in_app, texts
from helpers import ingest_files, list_keys, png, tiny_services
from streamlit.testing.v1 import AppTest

from core.auth import UserStore
from core.doctor import CHECKS
from core.storage import LocalStore

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TITLES = [cls.title for cls in CHECKS.values()]  # Configuration, Embedding model, Image store, ...


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data dir with the tiny test model (as tests/test_app.py)."""
    monkeypatch.setenv("VAD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VAD_MODEL", "tiny:random")
    return tmp_path / "data"


def frame_with(at: AppTest, *columns: str) -> pd.DataFrame:
    return next(d.value for d in at.main.dataframe if list(d.value.columns) == list(columns))


def page_icons() -> dict[str, str]:
    """The page's status icons (``ICONS`` in pages/status.py), read from its source."""
    tree = ast.parse((ROOT / "pages" / "status.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ICONS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("pages/status.py has no ICONS")


def check_lines(at: AppTest) -> dict[str, tuple[str, str]]:
    """Check title -> (status shown by its icon, summary) as the page renders the headlines."""
    icons = page_icons()
    shown = {}
    for line in (m.value for m in at.main.markdown):
        for title in TITLES:
            head = f" **{title}** · "
            if head in line:
                icon, summary = line.split(head, 1)
                shown[title] = (next(status for status, i in icons.items() if i == icon), summary)
    assert list(shown) == TITLES, list(shown)
    return shown


def test_admin_sees_every_check_counts_and_versions(app_env: Path) -> None:
    add_user(app_env, "bob")
    with tiny_services(app_env) as services:  # closed again before the app opens the index
        ingest_files(services, "root", {"r1.png": png(1), "r2.png": png(2)})
        ingest_files(services, "bob", {"b1.png": png(3)})
        ingest_files(services, "ghost", {"g1.png": png(4)})  # images whose account is gone
    objects = list_keys(LocalStore(app_env / "objects"))

    at = open_page(signed_in_app(app_env, "root", admin=True), "status")
    assert not at.exception
    assert [t.value for t in at.title] == ["Status"]
    lines = check_lines(at)
    assert {title: status for title, (status, _) in lines.items()} == {
        "Configuration": "ok",
        "Embedding model": "warn",
        "Image store": "ok",
        "Vector index": "ok",
        "Free disk space": "ok",
        "Orphaned objects": "ok",
    }
    assert "random weights" in lines["Embedding model"][1]
    assert lines["Vector index"][1].endswith(": 4 images")
    assert lines["Image store"][1].endswith("write, read and delete work")
    # the tiny model's random weights are the one warning; nothing failed
    assert [w.value for w in at.main.warning] == ["Running, with warnings: model."]
    assert not at.main.error and not at.main.success

    counts = frame_with(at, "user", "role", "images")
    assert counts.to_dict("records") == [
        {"user": "bob", "role": "user", "images": 1},
        {"user": "ghost", "role": "(no account)", "images": 1},
        {"user": "root", "role": "admin", "images": 2},
    ]
    metrics = {m.label: m.value for m in at.main.metric}
    assert (metrics["Accounts"], metrics["Images"]) == ("2", "4")
    assert metrics["Metrics endpoint"] == "off"

    versions = dict(frame_with(at, "component", "version").itertuples(index=False, name=None))
    assert versions["torch"] == metadata.version("torch")
    assert versions["qdrant-client"] == metadata.version("qdrant-client")
    assert versions["streamlit"] == metadata.version("streamlit")
    assert versions["qdrant server"] == "n/a (embedded)"

    settings = frame_with(at, "variable", "value")
    described = dict(settings.itertuples(index=False, name=None))
    assert described["VAD_MODEL"] == "tiny:random"
    assert described["VAD_DATA_DIR"] == str(app_env)
    # the store probe (run on the app's own store) left nothing behind
    assert list_keys(LocalStore(app_env / "objects")) == objects


def test_a_broken_store_shows_up_when_the_checks_run_again(app_env: Path) -> None:
    at = open_page(signed_in_app(app_env, "root", admin=True), "status")
    assert not at.main.error
    # the objects folder is replaced by a regular file under the running app
    shutil.rmtree(app_env / "objects")
    (app_env / "objects").write_text("in the way")
    button(at, "Run the checks again").click()
    at.run()
    assert not at.exception
    assert [e.value for e in at.main.error] == ["1 check(s) failed: store. Details below."]
    lines = check_lines(at)
    status, summary = lines["Image store"]
    assert status == "fail"
    assert summary.startswith(f"VAD_DATA_DIR={app_env}: could not write doctor-probe-")
    assert lines["Vector index"][0] == "ok"


def test_all_checks_pass_with_a_real_model(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EfficientNet-Lite0 (weights shipped in a package, no random weights, no fallback notice)."""
    monkeypatch.setenv("VAD_MODEL", "efficientnet-lite0")
    at = open_page(signed_in_app(app_env, "root", admin=True), "status")
    assert not at.exception
    assert [s.value for s in at.main.success] == ["All checks passed."]
    assert not at.main.warning and not at.main.error
    lines = check_lines(at)
    assert {status for status, _ in lines.values()} == {"ok"}
    assert lines["Embedding model"][1].startswith("efficientnet-lite0 (1280-d")


def test_plain_users_cannot_open_the_status_page(app_env: Path) -> None:
    at = signed_in_app(app_env, "erin")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_page(at, "status")  # not in a plain user's navigation
    assert "Vector index" not in texts(at)


def test_the_page_itself_refuses_non_admins(app_env: Path) -> None:
    """Reached without the navigation's filter (role missing or plain), the page stops at its guard."""
    for roles in (None, ["user"]):
        at = AppTest.from_file(str(ROOT / "pages" / "status.py"), default_timeout=60)
        if roles is not None:
            at.session_state["roles"] = roles
        at.run()
        assert not at.exception
        assert [e.value for e in at.error] == ["Only admins can see the service status."]
        assert not at.title and not at.dataframe
        assert not any("**Vector index**" in m.value for m in at.markdown)


def test_an_admin_demoted_meanwhile_loses_the_page(app_env: Path) -> None:
    add_user(app_env, "root", admin=True)
    at = open_page(signed_in_app(app_env, "zoe", admin=True), "status")
    assert "Status" in [t.value for t in at.title]
    UserStore(app_env).set_admin("zoe", False)  # by another admin, e.g. from the CLI
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Gallery"]  # the default page instead
    assert not any("**Vector index**" in m.value for m in at.main.markdown)

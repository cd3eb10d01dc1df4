"""Background jobs in the app (AppTest): the sidebar's jobs panel with progress and a cancel button,
and a page that waits for the neighbour graph showing the job's progress, then its results.

The jobs run in the app's real runner (the one ``app.jobs_panel.runner()`` keeps per process); a
job held open by the test stands for a long one, so its progress can be read while it runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from apptest_helpers import button, open_page, png, settle, signed_in_app, texts, upload

from core.jobs import JobContext

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Holds the test's long job open until set (always set at the end, so no job outlives a test)."""
    event = threading.Event()
    yield event
    event.set()


def app_runner():
    from app import jobs_panel

    return jobs_panel.runner()  # the same cached runner the app's script runs use


def held_job(gate: threading.Event, total: int = 40):
    """A job that gets a quarter of the way, then waits for ``gate`` (or a cancel)."""

    def run(job: JobContext) -> None:
        for done in range(total // 4):
            job.result({"path": f"f{done}.png", "status": "stored"}, "stored")
            job.progress(done + 1, total, f"{done + 1} read")
        job.flush()
        while not gate.wait(0.02):
            job.check()

    return run


def progress_texts(at) -> list[str]:
    return [element.proto.text for element in at.get("progress")]


def test_the_sidebar_shows_a_running_job_on_every_page_and_cancels_it(app_env, gate) -> None:
    at = open_page(signed_in_app(app_env, "jo"), "upload")
    job = app_runner().submit("jo", "upload", "Upload of 40 file(s)", held_job(gate))
    for page in ("gallery", "search", "upload"):
        at.switch_page(f"../pages/{page}.py")
        at.run()
        assert [e.label for e in at.sidebar.expander if e.label.startswith("Jobs")] == ["Jobs · 1 running"], page
        assert any("10 of 40" in text for text in progress_texts(at)), (page, progress_texts(at))
        assert "Upload of 40 file(s)" in texts(at)

    button(at, "Cancel", key=f"sidebar_cancel_{job.id}").click()
    at.run()
    assert app_runner().wait("jo", job.id, timeout=10).status == "cancelled"
    at.run()  # what the panel's auto-refresh does in a browser
    assert [e.label for e in at.sidebar.expander if e.label.startswith("Jobs")] == ["Jobs"]
    assert "cancelled · 10 stored" in texts(at)
    # The upload page keeps the cancelled job's report.
    assert "This job was cancelled" in texts(at)
    assert list(at.dataframe[0].value["path"]) == [f"f{i}.png" for i in range(10)]


def test_a_page_waits_for_the_neighbour_graph_with_its_progress(app_env, gate) -> None:
    at = open_page(signed_in_app(app_env, "kim"), "upload")
    upload(at, [(f"k{i}.png", png(600 + i)) for i in range(5)])
    graph = app_runner().submit("kim", "graph", "Neighbour graph", held_job(gate), key="graph")

    at.switch_page("../pages/duplicates.py")
    at.run()  # the page finds the user's graph job running: it shows its progress and stops
    assert "Computing the neighbour graph" in texts(at)
    assert any("10 of 40" in text for text in progress_texts(at))
    assert not at.main.metric  # no results before the graph is there
    assert button(at, "Cancel", key=f"wait_cancel_{graph.id}")

    gate.set()
    settle(at)  # the job ends; the page runs again, brings the graph up to date and goes on
    settle(at.run())  # the held job may have ended before settle looked: run the page once more
    assert "Computing the neighbour graph" not in texts(at)
    assert "Neighbour graph v1 · 5 images · exact" in texts(at)
    assert {m.label for m in at.main.metric} >= {"Clusters", "Images in clusters"}


def test_admins_import_only_from_the_configured_roots(app_env, tmp_path, monkeypatch) -> None:
    roots = tmp_path / "imports"
    (roots / "batch").mkdir(parents=True)
    for i in range(2):
        (roots / "batch" / f"i{i}.png").write_bytes(png(700 + i))
    (tmp_path / "private").mkdir()
    monkeypatch.setenv("VAD_IMPORT_ROOTS", f"{roots}, s3://bucket/imports")
    at = open_page(signed_in_app(app_env, "root", admin=True), "upload")
    assert "Import a folder or S3 prefix" in [e.label for e in at.main.expander]

    at.text_input(key="import_source").input(str(tmp_path / "private"))
    button(at, "Import").click()
    at.run()
    assert f"{tmp_path / 'private'} is not inside an allowed import location" in texts(at)
    assert not at.dataframe  # nothing was imported

    at.text_input(key="import_source").input(str(roots / "batch"))
    button(at, "Import").click()
    at.run()
    settle(at)
    table = at.dataframe[0].value
    assert {(p.rsplit("/", 1)[-1], s) for p, s in zip(table["path"], table["status"], strict=True)} == {
        ("i0.png", "stored"),
        ("i1.png", "stored"),
    }
    assert f"Import of {roots / 'batch'}" in texts(at)

    other = open_page(signed_in_app(app_env, "pat"), "upload")
    assert "Import a folder or S3 prefix" not in [e.label for e in other.main.expander]  # not for users

"""core.trash: deletes go to a trash and come back exactly; purges remove the objects for good,
never those of an image that is back or still held; doctor's orphan scan leaves the trash alone.

Real Services (LocalStore, embedded Qdrant, the tiny random CLIP); the CLI runs as a subprocess.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from helpers import ingest_files, jpeg, list_keys, png, tiny_services
from test_cli import run_cli

from core import gallery
from core.collection import load_collection
from core.journal import scan_orphans
from core.services import Services
from core.storage import LocalStore
from core.trash import Trash, held_keys, open_trash

ALICE, BOB = "alice", "bob"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    with tiny_services(tmp_path / "data", trash_days=7) as services:
        yield services


@pytest.fixture
def stored(services: Services) -> dict[str, str]:
    ids = ingest_files(services, ALICE, {"a.png": png(seed=1), "b.jpg": jpeg(seed=2), "c.png": png(seed=3)})
    ids |= {f"bob:{k}": v for k, v in ingest_files(services, BOB, {"d.png": png(seed=4)}).items()}
    return ids


@pytest.fixture
def trash(services: Services) -> Trash:
    return open_trash(services)


def points(services: Services, user: str) -> dict[str, tuple[dict, np.ndarray]]:
    return {r.id: (r.payload, r.vector) for r in services.index.scroll(user, with_vectors=True)}


def object_keys(services: Services, image_id: str, user: str = ALICE) -> set[str]:
    (record,) = services.index.retrieve(user, [image_id])
    return {record.payload["original_key"], record.payload["thumbnail_key"]}


def test_delete_then_restore_gives_back_the_same_points(services: Services, stored: dict, trash: Trash) -> None:
    before = points(services, ALICE)
    keys = list_keys(services.store)
    a, b = stored["a.png"], stored["b.jpg"]

    batch = trash.move(ALICE, [a, b, a])
    assert batch is not None and (batch.user, batch.count) == (ALICE, 2)
    assert set(points(services, ALICE)) == {stored["c.png"]}
    assert set(gallery.list_images(services, ALICE)["filename"]) == {"c.png"}  # the vector cache follows
    assert list_keys(services.store) == keys  # objects stay while in the trash
    assert {i.filename for i in trash.items(ALICE)} == {"a.png", "b.jpg"}
    assert all(i.batch == batch.id for i in trash.items(ALICE))

    done = trash.restore(ALICE, batch=batch.id)
    assert sorted(done.restored) == sorted([a, b]) and done.skipped == {}
    after = points(services, ALICE)
    assert set(after) == set(before)
    for image_id, (payload, vector) in before.items():
        assert after[image_id][0] == payload
        np.testing.assert_array_equal(after[image_id][1], vector)
    assert trash.items(ALICE) == []
    collection = load_collection(services, ALICE)  # analyses see the same rows and vectors again
    assert len(collection) == 3
    row = list(collection.images["id"]).index(a)
    np.testing.assert_array_equal(collection.vectors[row], before[a][1])


def test_restore_some_of_a_batch_keeps_the_rest(services: Services, stored: dict, trash: Trash) -> None:
    a, b, c = stored["a.png"], stored["b.jpg"], stored["c.png"]
    first = trash.move(ALICE, [a, b])
    second = trash.move(ALICE, [c])
    assert first and second and first.id != second.id
    assert trash.items(ALICE)[0].id == c  # most recent first

    assert trash.restore(ALICE, [b]).restored == [b]
    assert {i.id for i in trash.items(ALICE)} == {a, c}
    assert trash.restore(ALICE, batch=second.id).restored == [c]
    assert [i.id for i in trash.items(ALICE)] == [a]
    assert set(points(services, ALICE)) == {b, c}


def test_users_never_touch_each_others_trash(services: Services, stored: dict, trash: Trash) -> None:
    assert trash.move(BOB, [stored["a.png"]]) is None
    assert services.index.count(ALICE) == 3
    batch = trash.move(ALICE, [stored["a.png"], stored["bob:d.png"]])
    assert batch is not None and batch.count == 1
    assert services.index.count(BOB) == 1
    assert trash.items(BOB) == []
    assert trash.restore(BOB, batch=batch.id).restored == []
    assert trash.purge(BOB) == 0
    assert [i.id for i in trash.items(ALICE)] == [stored["a.png"]]


def test_purge_removes_the_objects_and_leaves_no_orphan(services: Services, stored: dict, trash: Trash) -> None:
    a = stored["a.png"]
    doomed = object_keys(services, a)
    keys = list_keys(services.store)
    trash.move(ALICE, [a, stored["b.jpg"]])
    assert scan_orphans(services.store, services.index, services.journal_dir).orphan_keys != []  # without held
    held = held_keys(services.settings.data_dir)
    assert doomed <= held
    assert scan_orphans(services.store, services.index, services.journal_dir, held=held).clean

    assert trash.purge(ALICE, [a]) == 1
    assert list_keys(services.store) == keys - doomed
    assert [i.filename for i in trash.items(ALICE)] == ["b.jpg"]
    held = held_keys(services.settings.data_dir)
    assert scan_orphans(services.store, services.index, services.journal_dir, held=held).clean
    assert trash.restore(ALICE, [a]).restored == []  # gone for good


def test_purge_expired_follows_the_retention(services: Services, stored: dict, trash: Trash) -> None:
    a, b = stored["a.png"], stored["b.jpg"]
    doomed = object_keys(services, a) | object_keys(services, b)
    keys = list_keys(services.store)
    trash.move(ALICE, [a])
    trash.move(ALICE, [b])
    now = datetime.now(UTC)
    assert trash.purge_expired(ALICE, now + timedelta(days=6.9)) == 0
    assert list_keys(services.store) == keys
    assert trash.purge_expired(ALICE, now + timedelta(days=7.1)) == 2
    assert trash.items(ALICE) == []
    assert list_keys(services.store) == keys - doomed


def test_a_zero_day_retention_purges_at_the_next_delete(tmp_path: Path) -> None:
    with tiny_services(tmp_path / "data", trash_days=0) as services:
        ids = ingest_files(services, ALICE, {"a.png": png(seed=1), "b.png": png(seed=2)})
        keys = list_keys(services.store)
        trash = open_trash(services)
        trash.move(ALICE, [ids["a.png"]])
        assert trash.items(ALICE) == []  # purged straight away
        assert len(list_keys(services.store)) == len(keys) - 2


def test_an_image_uploaded_again_keeps_its_objects(services: Services, stored: dict, trash: Trash) -> None:
    a = stored["a.png"]
    keys = object_keys(services, a)
    trash.move(ALICE, [a])
    assert ingest_files(services, ALICE, {"a-again.png": png(seed=1)}) == {"a-again.png": a}

    done = trash.restore(ALICE, [a])
    assert done.restored == [] and done.skipped == {a: "already in the collection (uploaded again)"}
    trash.move(ALICE, [a])
    ingest_files(services, ALICE, {"a-third.png": png(seed=1)})
    assert trash.purge(ALICE) == 1  # dropped from the trash...
    assert keys <= list_keys(services.store)  # ...but the objects stay: the image is back
    (record,) = services.index.retrieve(ALICE, [a])
    assert record.payload["filename"] == "a-third.png"


def test_an_image_whose_original_was_lost_is_not_restored(services: Services, stored: dict, trash: Trash) -> None:
    a = stored["a.png"]
    (record,) = services.index.retrieve(ALICE, [a])
    trash.move(ALICE, [a, stored["b.jpg"]])
    services.store.delete(record.payload["original_key"])
    done = trash.restore(ALICE)
    assert done.restored == [stored["b.jpg"]]
    assert done.skipped == {a: "its original is no longer in the store"}
    assert services.index.retrieve(ALICE, [a]) == []


def test_gallery_delete_goes_through_the_trash(services: Services, stored: dict) -> None:
    keys = list_keys(services.store)
    assert gallery.delete(services, ALICE, [stored["a.png"], stored["bob:d.png"]]) == 1
    assert gallery.delete(services, ALICE, []) == 0
    assert list_keys(services.store) == keys
    assert [i.id for i in open_trash(services).items(ALICE)] == [stored["a.png"]]


def test_cli_delete_restore_and_permanent(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tiny_services(data) as services:
        ids = ingest_files(services, ALICE, {"a.png": png(seed=1), "b.png": png(seed=2)})
        keys = list_keys(services.store)
    a, b = ids["a.png"], ids["b.png"]

    moved = run_cli("delete", "--user", ALICE, a, data_dir=data)
    assert moved.returncode == 0, moved.stderr
    assert "moved 1 image(s) of alice to the trash" in moved.stdout
    listed = run_cli("trash", "list", "--user", ALICE, data_dir=data)
    assert f'"id": "{a}"' in listed.stdout and '"filename": "a.png"' in listed.stdout
    restored = run_cli("trash", "restore", "--user", ALICE, data_dir=data)
    assert (restored.returncode, restored.stdout.strip()) == (0, "restored 1 image(s) of alice"), restored.stderr

    gone = run_cli("delete", "--user", ALICE, "--permanent", b, data_dir=data)
    assert (gone.returncode, gone.stdout.strip()) == (0, "deleted 1 image(s) of alice for good"), gone.stderr
    with tiny_services(data) as services:
        assert [r.id for r in services.index.scroll(ALICE)] == [a]
        assert len(list_keys(services.store)) == len(keys) - 2
        assert open_trash(services).items(ALICE) == []
    missing = run_cli("delete", "--user", ALICE, b, data_dir=data)
    assert missing.returncode == 1 and "no image of alice" in missing.stderr


def test_trash_page_restores_and_empties_with_confirmation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from apptest_helpers import button, open_page, signed_in_app, texts

    data = tmp_path / "data"
    monkeypatch.setenv("VAD_DATA_DIR", str(data))
    monkeypatch.setenv("VAD_MODEL", "tiny:random")
    with tiny_services(data) as services:
        ids = ingest_files(services, ALICE, {"a.png": png(seed=1), "b.png": png(seed=2), "c.png": png(seed=3)})
        open_trash(services).move(ALICE, [ids["a.png"], ids["b.png"]])
        keys = list_keys(services.store)
        doomed = object_keys_after_move(services, ids["b.png"])

    at = open_page(signed_in_app(data, ALICE), "trash")
    assert "**2** image(s)" in texts(at) and "7 day(s) left" in texts(at)
    at.checkbox(key=f"trash_pick_{ids['a.png']}").check()
    at.run()
    button(at, "Restore 1 selected").click()
    at.run()
    assert "**1** image(s)" in texts(at)
    assert at.sidebar.metric[0].value == "2"  # a.png is back in the collection
    assert button(at, "Empty trash", key="trash_empty").disabled, "emptying needs the confirmation"
    at.checkbox(key="trash_empty_confirm").check()
    at.run()
    button(at, "Empty trash", key="trash_empty").click()
    at.run()
    assert "The trash is empty" in texts(at)
    assert list_keys_of(data) == keys - doomed


def object_keys_after_move(services: Services, image_id: str) -> set[str]:
    (item,) = [i for i in open_trash(services).items(ALICE) if i.id == image_id]
    return set(item.keys)


def list_keys_of(data: Path) -> set[str]:
    """The objects of the app's data folder (its index stays open in the app: the store alone)."""
    return list_keys(LocalStore(data / "objects"))

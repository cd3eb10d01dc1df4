"""core.duplicates: exact / near / semantic clusters, keeper-centred clusters, the pHash inside
borders, the size-aware semantic threshold, remembered 'not duplicates' and per-user scoping.

Exact and near duplicates go through the real ingest pipeline (local store, embedded index, tiny
random CLIP). The tiny model's vectors are meaningless (every pair has cosine > 0.99), so the
semantic level is tested on Collections built directly, with vectors we control.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import (
    NORMAL_STATS,
    REAL_PHOTOS,
    encode,
    ingest_files,
    pattern,
    synthetic_collection,
    tiny_services,
    unit_rows,
)
from PIL import Image, ImageDraw

from core import duplicates
from core.collection import load_collection
from core.duplicates import (
    LEVELS,
    SEMANTIC_DEFAULTS,
    Cluster,
    DuplicateFinder,
    clusters_frame,
    default_semantic_threshold,
    duplicate_report,
    keeper_order,
)
from core.hashing import phash_distance
from core.reviews import mark_not_duplicates
from core.services import Services

ALICE, BOB = "alice", "bob"
NO_SEMANTIC = ("exact", "near")  # tiny:random puts every pair above any sensible cosine threshold
BORDER_TRANSFORMS = ("border", "blurred border", "letterbox", "frame")


def base_picture() -> Image.Image:
    return pattern(1, (320, 240))


def photo_files() -> dict[str, bytes]:
    """The original, a pixel-identical lossless WebP, a resized JPEG copy, two unrelated pictures."""
    base = base_picture()
    return {
        "original.png": encode(base, "PNG"),
        "same-pixels.webp": encode(base, "WEBP", lossless=True),
        "smaller.jpg": encode(base.resize((160, 120), Image.Resampling.LANCZOS), "JPEG", quality=70),
        "other-a.png": encode(pattern(2, (320, 240)), "PNG"),
        "other-b.png": encode(pattern(3, (320, 240)), "PNG"),
    }


def edited_copy() -> bytes:
    """The original with a small black corner, resized and recompressed: a few pHash bits away."""
    edited = base_picture()
    ImageDraw.Draw(edited).rectangle([0, 0, 20, 20], fill=(0, 0, 0))
    return encode(edited.resize((200, 150), Image.Resampling.LANCZOS), "JPEG", quality=60)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def services(data_dir: Path) -> Iterator[Services]:
    with tiny_services(data_dir) as services:
        yield services


@pytest.fixture
def photos(services: Services) -> dict[str, str]:
    """Alice's photo_files(): name -> image id."""
    return ingest_files(services, ALICE, photo_files())


def payloads(services: Services, user: str) -> dict[str, dict]:
    return {r.payload["filename"]: r.payload for r in services.index.scroll(user)}


def member_sets(clusters: list[Cluster]) -> list[set[str]]:
    return [set(c.members) for c in clusters]


def link_levels(cluster: Cluster, names: dict[str, str]) -> dict[frozenset[str], str]:
    """{frozenset of the two file names: level} for every link of a cluster."""
    return {frozenset((names[link["a"]], names[link["b"]])): link["level"] for link in cluster.links}


# --- known duplicates through the real pipeline ------------------------------------------------


def test_png_and_lossless_webp_are_exact_duplicates(services: Services, photos: dict[str, str]) -> None:
    stored = payloads(services, ALICE)
    png, webp = stored["original.png"], stored["same-pixels.webp"]
    assert png["sha256"] != webp["sha256"]
    assert png["pixel_sha256"] == webp["pixel_sha256"]
    assert len({p["pixel_sha256"] for p in stored.values()}) == 4

    clusters = duplicate_report(services, ALICE, levels=("exact",))
    assert member_sets(clusters) == [{photos["original.png"], photos["same-pixels.webp"]}]
    (cluster,) = clusters
    assert cluster.level == "exact"
    assert [link["level"] for link in cluster.links] == ["exact"]
    assert cluster.links[0]["phash_distance"] == 0


def test_resized_jpeg_copy_is_a_near_duplicate(services: Services, photos: dict[str, str]) -> None:
    stored = payloads(services, ALICE)
    distance = phash_distance(stored["original.png"]["phash"], stored["smaller.jpg"]["phash"])
    assert distance <= 8
    assert stored["original.png"]["pixel_sha256"] != stored["smaller.jpg"]["pixel_sha256"]

    clusters = duplicate_report(services, ALICE, levels=("near",))
    # near alone also groups the pixel-identical WebP (same pHash), but only as "near"
    assert member_sets(clusters) == [{photos["original.png"], photos["same-pixels.webp"], photos["smaller.jpg"]}]
    assert clusters[0].level == "near"
    assert {link["level"] for link in clusters[0].links} == {"near"}
    names = {v: k for k, v in photos.items()}
    for link in clusters[0].links:
        a, b = stored[names[link["a"]]], stored[names[link["b"]]]
        assert link["phash_distance"] == phash_distance(a["phash"], b["phash"])


def test_each_link_reports_its_own_level(services: Services, photos: dict[str, str]) -> None:
    (cluster,) = duplicate_report(services, ALICE, levels=NO_SEMANTIC)
    names = {v: k for k, v in photos.items()}
    assert set(cluster.members) == {photos["original.png"], photos["same-pixels.webp"], photos["smaller.jpg"]}
    assert link_levels(cluster, names) == {
        frozenset({"original.png", "same-pixels.webp"}): "exact",
        frozenset({"original.png", "smaller.jpg"}): "near",
        frozenset({"same-pixels.webp", "smaller.jpg"}): "near",
    }
    assert cluster.level == "exact"  # the cluster's level is its strongest link


def test_exact_only_does_not_report_the_resized_copy(services: Services, photos: dict[str, str]) -> None:
    clusters = duplicate_report(services, ALICE, levels=("exact",))
    assert all(photos["smaller.jpg"] not in c.members for c in clusters)
    assert duplicate_report(services, ALICE, levels=()) == []


def test_keeper_of_the_real_cluster(services: Services, photos: dict[str, str]) -> None:
    stored = payloads(services, ALICE)
    (cluster,) = duplicate_report(services, ALICE, levels=NO_SEMANTIC)
    # original.png and same-pixels.webp are both 320x240: the larger file wins
    bigger = max(["original.png", "same-pixels.webp"], key=lambda name: stored[name]["bytes"])
    assert cluster.keeper == photos[bigger]
    assert cluster.keeper_reason == f"same pixel count, largest file ({stored[bigger]['bytes'] / 1024:.0f} KB)"
    assert cluster.to_delete == cluster.members[1:]
    assert photos["smaller.jpg"] in cluster.to_delete


def test_resized_copy_loses_to_the_original_on_pixels(services: Services) -> None:
    base = base_picture()
    ids = ingest_files(
        services,
        ALICE,
        {
            # the small copy is the larger file (uncompressed PNG) but has fewer pixels
            "small.png": encode(base.resize((160, 120)), "PNG", compress_level=0),
            "big.jpg": encode(base, "JPEG", quality=50),
        },
    )
    stored = payloads(services, ALICE)
    assert stored["small.png"]["bytes"] > stored["big.jpg"]["bytes"]
    (cluster,) = duplicate_report(services, ALICE, levels=NO_SEMANTIC)
    assert cluster.members == [ids["big.jpg"], ids["small.png"]]
    assert cluster.keeper_reason == "most pixels (320×240)"


# --- semantic level, levels on and off (synthetic collections) ---------------------------------


def rotated(base: np.ndarray, direction: np.ndarray, cosine: float) -> np.ndarray:
    """A unit vector at exactly ``cosine`` from unit ``base``, towards ``direction``."""
    ortho = direction - (direction @ base) * base
    ortho /= np.linalg.norm(ortho)
    return cosine * base + np.sqrt(1 - cosine**2) * ortho


def test_semantic_pairs_with_far_phashes() -> None:
    rng = np.random.default_rng(3)
    vectors = unit_rows(rng.normal(size=(10, 32))).astype(np.float64)
    vectors[1] = rotated(vectors[0], vectors[1], 0.97)  # 0 ~ 1 semantically
    vectors[3] = rotated(vectors[2], vectors[3], 0.935)  # 2 ~ 3, just above 0.93
    vectors[5] = rotated(vectors[4], vectors[5], 0.92)  # 4, 5: just below
    collection = synthetic_collection(vectors)
    ids = list(collection.images["id"])
    hashes = list(collection.images["phash"])
    assert min(phash_distance(a, b) for a, b in combinations(hashes, 2)) > 8

    clusters = DuplicateFinder(semantic_threshold=0.93).find(collection)
    assert sorted(map(sorted, member_sets(clusters))) == [[ids[0], ids[1]], [ids[2], ids[3]]]
    for cluster in clusters:
        assert cluster.level == "semantic"
        assert [link["level"] for link in cluster.links] == ["semantic"]
        assert cluster.links[0]["phash_distance"] > 8
    assert clusters[0].min_similarity == pytest.approx(0.97, abs=1e-3)  # sorted by similarity
    assert clusters[1].min_similarity == pytest.approx(0.935, abs=1e-3)

    assert DuplicateFinder(semantic_threshold=0.93, levels=NO_SEMANTIC).find(collection) == []
    lower = DuplicateFinder(semantic_threshold=0.9, levels=("semantic",)).find(collection)
    assert {ids[4], ids[5]} in member_sets(lower)


def one_pair_per_level():
    """Rows 0-1: same pixels only; 2-3: pHash 4 bits apart only; 4-5: cosine 0.97 only; 6-9: unrelated."""
    rng = np.random.default_rng(11)
    vectors = unit_rows(rng.normal(size=(10, 32))).astype(np.float64)
    vectors[5] = rotated(vectors[4], vectors[5], 0.97)
    template = synthetic_collection(vectors)
    phashes = list(template.images["phash"])
    phashes[3] = f"{int(phashes[2], 16) ^ 0b1111:016x}"
    pixels = list(template.images["pixel_sha256"])
    pixels[1] = pixels[0]
    collection = synthetic_collection(vectors, phash=phashes, pixel_sha256=pixels)
    ids = list(collection.images["id"])
    return collection, {"exact": {ids[0], ids[1]}, "near": {ids[2], ids[3]}, "semantic": {ids[4], ids[5]}}


@pytest.mark.parametrize(
    "levels", [(), ("exact",), ("near",), ("semantic",), ("exact", "near"), ("near", "semantic"), LEVELS]
)
def test_each_level_can_be_switched_off(levels: tuple[str, ...]) -> None:
    collection, pairs = one_pair_per_level()
    finder = DuplicateFinder(near_threshold=8, semantic_threshold=0.93, levels=levels)
    clusters = finder.find(collection)
    assert sorted(map(sorted, member_sets(clusters))) == sorted(sorted(pairs[level]) for level in levels)
    for cluster in clusters:
        (level,) = [name for name, pair in pairs.items() if pair == set(cluster.members)]
        assert cluster.level == level
        assert [link["level"] for link in cluster.links] == [level]


# --- keeper rule --------------------------------------------------------------------------------


def three_same_pixels(**columns: list) -> list[Cluster]:
    vectors = np.random.default_rng(0).normal(size=(3, 16))
    collection = synthetic_collection(vectors, pixel_sha256=["p" * 64] * 3, **columns)
    clusters = DuplicateFinder(levels=("exact",)).find(collection)
    assert len(clusters) == 1 and len(clusters[0].members) == 3
    return clusters


def test_keeper_has_the_most_pixels_even_if_smaller_and_newer() -> None:
    (cluster,) = three_same_pixels(
        width=[640, 1280, 800], height=[480, 960, 600], bytes=[900_000, 100_000, 500_000], created_ts=[1.0, 3.0, 2.0]
    )
    assert cluster.members == ["img-001", "img-002", "img-000"]
    assert cluster.keeper == "img-001"
    assert cluster.keeper_reason == "most pixels (1280×960)"


def test_keeper_on_equal_pixels_is_the_largest_file_even_if_newer() -> None:
    (cluster,) = three_same_pixels(bytes=[200_000, 300_000, 1_000_000], created_ts=[1.0, 2.0, 3.0])
    assert cluster.members == ["img-002", "img-001", "img-000"]
    assert cluster.keeper_reason == "same pixel count, largest file (977 KB)"


def test_keeper_on_equal_pixels_and_size_is_the_oldest() -> None:
    (cluster,) = three_same_pixels(created_ts=[1_700_000_300.0, 1_600_000_000.0, 1_700_000_000.0])
    assert cluster.members == ["img-001", "img-002", "img-000"]
    when = datetime.fromtimestamp(1_600_000_000, UTC).strftime("%Y-%m-%d %H:%M")
    assert when == "2020-09-13 12:26"
    assert cluster.keeper_reason == f"same pixels and file size, oldest (added {when} UTC)"


def test_keeper_of_two_pictures_a_few_pixels_apart_is_the_larger_file() -> None:
    """Borders found on a re-encoded copy differ by a few pixels: 362x376 and 362x373 are as many
    pixels (their counts straddle a 10 % step of a log scale, which once decided it)."""
    (cluster,) = three_same_pixels(
        width=[368, 368, 368],
        height=[382, 382, 382],
        content_size=[(362, 376), (362, 373), (300, 300)],
        bytes=[21_899, 102_833, 500_000],
    )
    assert cluster.members == ["img-001", "img-000", "img-002"]
    assert cluster.keeper_reason == "same pixel count, largest file (100 KB)"


def test_keeper_is_never_a_copy_the_quality_checks_flag() -> None:
    dark = {**NORMAL_STATS, "brightness": 0.03, "brightness_p10": 0.0, "brightness_p90": 0.05}
    (cluster,) = three_same_pixels(
        width=[1280, 640, 640],
        height=[960, 480, 480],
        bytes=[100_000, 200_000, 300_000],
        quality=[dark, dict(NORMAL_STATS), dict(NORMAL_STATS)],
    )
    assert cluster.keeper == "img-002"  # the dark copy has four times the pixels, yet is kept last
    assert cluster.members[-1] == "img-000"
    assert cluster.keeper_reason == "no quality flags, then same pixel count, largest file (293 KB)"

    (cluster,) = three_same_pixels(quality=[dark, dict(NORMAL_STATS), dark])
    assert cluster.keeper == "img-001"
    assert cluster.keeper_reason == "no quality flags (640×480)"


def test_keeper_order_ranks_all_rows() -> None:
    rows = pd.DataFrame(
        {
            "width": [100, 200, 200, 200, 50],
            "height": [100, 100, 100, 100, 400],
            "bytes": [5, 1, 9, 9, 1],
            "created_ts": [0.0, 0.0, 20.0, 10.0, 0.0],
        }
    )
    order, reason = keeper_order(rows)
    assert list(order) == [3, 2, 1, 4, 0]  # 20000 px: size 9 (older, newer), size 1; then 50x400; 100x100
    assert reason.startswith("same pixels and file size, oldest")


# --- clusters are stars around a keeper ------------------------------------------------------------
# Since issue 13 a cluster is the keeper and its duplicates (every member a duplicate of the keeper),
# not a complete-linkage group (every pair a duplicate): complete linkage cut an original's reframed
# copies away from it whenever two copies were not duplicates of each other. The chain tests below
# used to require that the ends of A~B~C never meet; they now require that no cluster reaches past
# its keeper's own duplicates.


def test_phash_chain_becomes_a_star_around_its_middle() -> None:
    far_apart = synthetic_collection(np.eye(8)).images["phash"].tolist()
    a = int(far_apart[0], 16)
    phashes = [f"{a:016x}", f"{a ^ 0x3F:016x}", f"{a ^ 0xFFF:016x}", *far_apart[3:]]  # 0 - 6 - 12 bits
    assert [phash_distance(phashes[0], p) for p in phashes[1:3]] == [6, 12]
    collection = synthetic_collection(np.eye(8), phash=phashes)
    a_id, b_id, c_id = collection.images["id"][:3]
    (cluster,) = DuplicateFinder(near_threshold=8).find(collection)
    assert cluster.keeper == b_id and set(cluster.members) == {a_id, b_id, c_id}
    assert cluster.keeper_reason.startswith("the one image all the others duplicate")
    levels = {frozenset((link["a"], link["b"])): link["level"] for link in cluster.links}
    assert levels == {frozenset((a_id, b_id)): "near", frozenset((b_id, c_id)): "near", frozenset((a_id, c_id)): None}


def test_phash_chain_of_four_never_joins_images_two_links_apart() -> None:
    far_apart = synthetic_collection(np.eye(8)).images["phash"].tolist()
    a = int(far_apart[0], 16)
    steps = [0, 0x3F, 0xFFF, 0x3FFFF]  # 0 - 6 - 12 - 18 bits from the first
    collection = synthetic_collection(np.eye(8), phash=[*(f"{a ^ s:016x}" for s in steps), *far_apart[4:]])
    ids = list(collection.images["id"][:4])
    clusters = DuplicateFinder(near_threshold=8).find(collection)
    assert len(clusters) == 1 and len(clusters[0].members) == 3
    for cluster in clusters:
        chain = sorted(ids.index(m) for m in cluster.members)
        assert chain[-1] - chain[0] == 2 and ids.index(cluster.keeper) == chain[1]


def test_chain_of_vectors_on_a_circle_is_cut_into_stars() -> None:
    step = np.radians(20)  # neighbours: cos 20° = 0.940; two steps apart: cos 40° = 0.766
    angles = step * np.arange(8)
    vectors = np.zeros((8, 16))
    vectors[:, 0], vectors[:, 1] = np.cos(angles), np.sin(angles)
    collection = synthetic_collection(vectors)
    threshold = 0.93
    clusters = DuplicateFinder(semantic_threshold=threshold).find(collection)
    assert clusters, "consecutive points are duplicates"
    position = {image_id: i for i, image_id in enumerate(collection.images["id"])}
    for cluster in clusters:
        keeper = position[cluster.keeper]
        assert all(abs(position[m] - keeper) <= 1 for m in cluster.members)  # only the keeper's neighbours
        assert cluster.min_similarity >= threshold - 1e-6
    seen = [m for c in clusters for m in c.members]
    assert len(seen) == len(set(seen))  # each image in at most one cluster


def test_every_member_is_a_duplicate_of_the_keeper() -> None:
    rng = np.random.default_rng(5)
    centre = unit_rows(rng.normal(size=(1, 16)))[0].astype(np.float64)
    vectors = np.array([rotated(centre, rng.normal(size=16), c) for c in np.linspace(0.955, 0.999, 25)])
    collection = synthetic_collection(vectors)
    threshold = 0.95
    clusters = DuplicateFinder(semantic_threshold=threshold, levels=("semantic",)).find(collection)
    normalised = collection.vectors
    position = {image_id: i for i, image_id in enumerate(collection.images["id"])}
    for cluster in clusters:
        rows = [position[m] for m in cluster.members]
        assert all(normalised[rows[0]] @ normalised[r] >= threshold - 1e-5 for r in rows[1:])
        assert len(cluster.links) == len(rows) * (len(rows) - 1) // 2
        for link in cluster.links:
            assert (link["level"] is not None) == (
                normalised[position[link["a"]]] @ normalised[position[link["b"]]] >= threshold
            )


def test_original_keeps_every_copy_even_when_copies_are_not_duplicates_of_each_other() -> None:
    """An original, four copies that each moved another way (cosine 0.90 to it, 0.81 to each other)
    and a letterboxed copy with more pixels found by its content pHash only: one cluster, kept
    around the original. Complete linkage made several clusters here."""
    rng = np.random.default_rng(8)
    basis = np.linalg.qr(rng.normal(size=(32, 32)))[0].T
    original = basis[0]
    vectors = [original, *(0.9 * original + np.sqrt(1 - 0.81) * basis[i] for i in range(1, 5)), basis[5], *basis[6:12]]
    template = synthetic_collection(np.array(vectors))
    phashes = list(template.images["phash"])
    content = list(phashes)
    content[5] = f"{int(phashes[0], 16) ^ 0b111:016x}"  # the letterboxed copy: its picture is the original's
    widths, heights = [640] * 12, [480] * 12
    widths[5] = 853  # 16:9, more pixels than the original
    collection = synthetic_collection(
        np.array(vectors), phash=phashes, content_phash=content, width=widths, height=heights
    )
    ids = list(collection.images["id"])
    clusters = DuplicateFinder(semantic_threshold=0.85).find(collection)
    assert [set(c.members) for c in clusters] == [set(ids[:6])]
    (cluster,) = clusters
    assert cluster.keeper == ids[0]
    via = {frozenset((link["a"], link["b"])): link["via"] for link in cluster.links}
    assert via[frozenset((ids[0], ids[5]))] == "pHash inside borders"
    assert all(via[frozenset((ids[0], ids[i]))] == "cosine" for i in range(1, 5))
    assert via[frozenset((ids[1], ids[2]))] is None  # two copies: no duplicates of each other
    assert cluster.min_similarity == pytest.approx(0.0, abs=0.05) or cluster.min_similarity < 0.85


# --- remembered "not duplicates", users, frame, thresholds --------------------------------------


def test_not_duplicates_are_no_longer_proposed_also_after_a_restart(data_dir: Path) -> None:
    with tiny_services(data_dir) as services:
        ids = ingest_files(services, ALICE, photo_files())
        png, webp, small = ids["original.png"], ids["same-pixels.webp"], ids["smaller.jpg"]
        assert member_sets(duplicate_report(services, ALICE, levels=NO_SEMANTIC)) == [{png, webp, small}]
        assert mark_not_duplicates(services.index, ALICE, [png, webp]) == 1
        clusters = duplicate_report(services, ALICE, levels=NO_SEMANTIC)
        assert all(not {png, webp} <= set(c.members) for c in clusters)
        assert member_sets(clusters) in ([{png, small}], [{webp, small}])
        before = member_sets(clusters)

    with tiny_services(data_dir) as services:
        clusters = duplicate_report(services, ALICE, levels=NO_SEMANTIC)
        assert member_sets(clusters) == before
        (record,) = services.index.retrieve(ALICE, [png])
        assert record.payload["not_duplicate_of"] == [webp]
        assert mark_not_duplicates(services.index, ALICE, [png, webp, small]) == 3

    with tiny_services(data_dir) as services:
        assert duplicate_report(services, ALICE, levels=NO_SEMANTIC) == []
        marked = {png, webp, small}
        for cluster in duplicate_report(services, ALICE, levels=LEVELS, semantic_threshold=-1.0):
            assert len(marked & set(cluster.members)) <= 1  # other images may join one of them


def test_not_duplicates_of_another_users_images_are_not_recorded(services: Services, photos: dict[str, str]) -> None:
    assert mark_not_duplicates(services.index, BOB, [photos["original.png"], photos["same-pixels.webp"]]) == 0
    assert "not_duplicate_of" not in payloads(services, ALICE)["original.png"]
    assert len(duplicate_report(services, ALICE, levels=("exact",))) == 1


def test_no_cluster_crosses_users(services: Services) -> None:
    alice = ingest_files(services, ALICE, photo_files())
    bob = ingest_files(services, BOB, photo_files())
    assert not set(alice.values()) & set(bob.values())
    for user, own in ((ALICE, alice), (BOB, bob)):
        for levels in (NO_SEMANTIC, LEVELS):
            clusters = duplicate_report(services, user, levels=levels, semantic_threshold=-1.0)
            assert clusters
            for cluster in clusters:
                assert set(cluster.members) <= set(own.values())
                assert {link["a"] for link in cluster.links} | {link["b"] for link in cluster.links} <= set(
                    own.values()
                )
        (cluster,) = duplicate_report(services, user, levels=NO_SEMANTIC)
        assert set(cluster.members) == {own["original.png"], own["same-pixels.webp"], own["smaller.jpg"]}


FRAME_COLUMNS = [
    "cluster",
    "level",
    "image_id",
    "filename",
    "is_keeper",
    "keeper_reason",
    "width",
    "height",
    "bytes",
    "cluster_size",
    "min_similarity",
]


def test_clusters_frame(services: Services, photos: dict[str, str]) -> None:
    ingest_files(services, ALICE, {"other-a-copy.webp": encode(pattern(2, (320, 240)), "WEBP", lossless=True)})
    clusters = duplicate_report(services, ALICE, levels=NO_SEMANTIC)
    images = load_collection(services, ALICE).images
    frame = clusters_frame(clusters, images)
    assert list(frame.columns) == FRAME_COLUMNS
    assert len(frame) == sum(len(c.members) for c in clusters) == 5
    assert list(frame["cluster"]) == [1, 1, 1, 2, 2]
    assert list(frame["image_id"]) == [m for c in clusters for m in c.members]
    assert list(frame["cluster_size"]) == [3, 3, 3, 2, 2]
    assert frame.groupby("cluster")["is_keeper"].sum().tolist() == [1, 1]
    keepers = frame[frame["is_keeper"]]
    assert list(keepers["image_id"]) == [c.keeper for c in clusters]
    assert list(keepers["keeper_reason"]) == [c.keeper_reason for c in clusters]
    assert (frame.loc[~frame["is_keeper"], "keeper_reason"] == "").all()
    stored = payloads(services, ALICE)
    for row in frame.to_dict("records"):
        payload = stored[row["filename"]]
        assert (row["width"], row["height"], row["bytes"]) == (payload["width"], payload["height"], payload["bytes"])
    assert set(frame.loc[frame["cluster"] == 2, "filename"]) == {"other-a.png", "other-a-copy.webp"}

    empty = clusters_frame([], images)
    assert list(empty.columns) == FRAME_COLUMNS and empty.empty


def test_report_uses_settings_phash_threshold_by_default(data_dir: Path) -> None:
    files = {"original.png": encode(base_picture(), "PNG"), "edited.jpg": edited_copy()}
    with tiny_services(data_dir) as services:
        ids = ingest_files(services, ALICE, files)
        stored = payloads(services, ALICE)
    distance = phash_distance(stored["original.png"]["phash"], stored["edited.jpg"]["phash"])
    assert 1 <= distance <= 7, distance
    pair = {ids["original.png"], ids["edited.jpg"]}

    with tiny_services(data_dir, phash_threshold=distance - 1) as services:
        assert services.settings.phash_threshold == distance - 1
        assert duplicate_report(services, ALICE, levels=("near",)) == []
        assert member_sets(duplicate_report(services, ALICE, levels=("near",), near_threshold=distance)) == [pair]
    with tiny_services(data_dir, phash_threshold=distance) as services:
        assert member_sets(duplicate_report(services, ALICE, levels=("near",))) == [pair]
        assert duplicate_report(services, ALICE, levels=("near",), near_threshold=distance - 1) == []


def test_report_semantic_threshold_default_and_override(
    services: Services, photos: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[DuplicateFinder] = []

    class Spy(DuplicateFinder):
        def find(self, collection, not_duplicates=None):  # type: ignore[no-untyped-def]
            used.append(self)
            return super().find(collection, not_duplicates)

    monkeypatch.setattr(duplicates, "DuplicateFinder", Spy)
    duplicate_report(services, ALICE)
    assert used[-1].semantic_threshold == default_semantic_threshold("tiny:random") == SEMANTIC_DEFAULTS["random"]
    assert used[-1].near_threshold == services.settings.phash_threshold == 8
    assert used[-1].levels == LEVELS

    assert duplicate_report(services, ALICE, levels=("semantic",), semantic_threshold=1.01) == []
    everything = duplicate_report(services, ALICE, levels=("semantic",), semantic_threshold=-1.0)
    assert used[-1].semantic_threshold == -1.0
    assert member_sets(everything) == [set(photos.values())]
    assert everything[0].level == "semantic"


def test_default_semantic_thresholds_per_model_family() -> None:
    assert default_semantic_threshold("efficientnet-lite0") == SEMANTIC_DEFAULTS["efficientnet-lite0"]
    assert default_semantic_threshold("ViT-B-32:openai") == SEMANTIC_DEFAULTS["clip"]
    assert default_semantic_threshold("ViT-B-16:laion2b_s34b_b88k") == SEMANTIC_DEFAULTS["clip"]
    assert default_semantic_threshold("tiny:random") == SEMANTIC_DEFAULTS["random"]
    assert default_semantic_threshold("ViT-B-32:random") == SEMANTIC_DEFAULTS["random"]


def test_fewer_than_two_images_have_no_clusters(services: Services) -> None:
    assert duplicate_report(services, ALICE) == []
    ingest_files(services, ALICE, {"one.png": encode(base_picture(), "PNG")})
    assert duplicate_report(services, ALICE, semantic_threshold=-1.0) == []


# --- size-aware semantic threshold ------------------------------------------------------------------


def test_small_images_get_a_stricter_semantic_threshold() -> None:
    assert duplicates.small_image_threshold(0.85, 640) == 0.85
    assert duplicates.small_image_threshold(0.85, duplicates.SMALL_SIDE) == 0.85
    assert duplicates.small_image_threshold(0.85, 100) == pytest.approx(1 - 0.15 * 100 / 112)
    tiny = duplicates.small_image_threshold(0.85, 32)
    assert tiny == pytest.approx(1 - 0.15 * 0.67) and tiny == duplicates.small_image_threshold(0.85, 8)


def test_a_pair_of_small_images_needs_the_stricter_threshold() -> None:
    """Pairs at cosine 0.895: the 640 px pair is a duplicate at 0.85, the 32 px pair is not
    (unless the size rule is off); a 32 px image with a 640 px one takes the stricter of the two."""
    rng = np.random.default_rng(21)
    vectors = unit_rows(rng.normal(size=(8, 32))).astype(np.float64)
    vectors[1] = rotated(vectors[0], vectors[1], 0.895)
    vectors[3] = rotated(vectors[2], vectors[3], 0.895)
    vectors[5] = rotated(vectors[4], vectors[5], 0.895)
    sides = [640, 640, 32, 32, 640, 32, 640, 640]
    collection = synthetic_collection(vectors, width=sides, height=sides)
    ids = list(collection.images["id"])
    finder = DuplicateFinder(semantic_threshold=0.85, levels=("semantic",))
    assert member_sets(finder.find(collection)) == [{ids[0], ids[1]}]
    loose = DuplicateFinder(semantic_threshold=0.85, levels=("semantic",), size_aware=False)
    assert sorted(map(sorted, member_sets(loose.find(collection)))) == sorted(
        sorted(pair) for pair in ([ids[0], ids[1]], [ids[2], ids[3]], [ids[4], ids[5]])
    )
    thresholds = finder.thresholds(collection.images)
    assert thresholds.small == 3
    assert thresholds.describe().startswith("Semantic threshold 0.85; up to 0.8995 for the 3 image(s) under 112 px")
    assert DuplicateFinder(semantic_threshold=0.85).thresholds(collection.images.iloc[:2]).describe() == (
        "Semantic threshold 0.85"
    )


# --- borders, letterbox bars and frames, through the real pipeline -----------------------------------


def real_photo_files(count: int) -> dict[str, bytes]:
    """``count`` sample photos (as 320 px JPEGs) and their border, blurred border, letterbox and
    frame copies, built by the benchmark's own transforms."""
    from bench.duplicates_quality import TRANSFORMS

    photos = sorted(REAL_PHOTOS.glob("*.JPEG"))[:count] if REAL_PHOTOS.is_dir() else []
    if len(photos) < count:
        pytest.skip(f"no sample photos in {REAL_PHOTOS}")
    rng = np.random.default_rng(0)
    files = {}
    for path in photos:
        with Image.open(path) as opened:
            photo = opened.convert("RGB")
        photo.thumbnail((320, 320))
        files[f"{path.stem}.jpg"] = encode(photo, "JPEG", quality=95)
        for name in BORDER_TRANSFORMS:
            copy, quality = TRANSFORMS[name](photo, rng)
            files[f"{path.stem}__{name}.jpg"] = encode(copy, "JPEG", quality=quality)
    return files


def test_copies_with_borders_letterbox_and_frames_are_near_duplicates(services: Services) -> None:
    ids = ingest_files(services, ALICE, real_photo_files(4))
    names = {image_id: name for name, image_id in ids.items()}
    clusters = duplicate_report(services, ALICE, levels=NO_SEMANTIC)
    photos = sorted({name.split("__")[0].removesuffix(".jpg") for name in ids})
    assert sorted(names[c.keeper].removesuffix(".jpg") for c in clusters) == photos  # one cluster per photo
    for cluster in clusters:
        stem = names[cluster.keeper].removesuffix(".jpg")
        assert {names[m] for m in cluster.members} == {f"{stem}.jpg", *(f"{stem}__{t}.jpg" for t in BORDER_TRANSFORMS)}
        keeper_links = [link for link in cluster.links if cluster.keeper in (link["a"], link["b"])]
        assert all(link["level"] == "near" for link in keeper_links)
        assert any(link["via"] == "pHash inside borders" for link in keeper_links)


def test_content_phash_is_stored_at_ingest_and_backfilled_for_older_images(data_dir: Path) -> None:
    with tiny_services(data_dir) as services:
        ids = ingest_files(services, ALICE, photo_files())
        stored = payloads(services, ALICE)
        assert all(len(p["content_phash"]) == 16 for p in stored.values())
        old = [ids["original.png"], ids["smaller.jpg"]]
        services.index.set_payload(ALICE, old, {"content_phash": None})
        images = load_collection(services, ALICE).images.set_index("filename")
        for name in ("original.png", "smaller.jpg"):
            assert images.loc[name, "content_phash"] == stored[name]["content_phash"]  # as ingest hashed it
    with tiny_services(data_dir) as services:  # persisted: not measured again
        again = payloads(services, ALICE)
        assert {n: p["content_phash"] for n, p in again.items()} == {n: p["content_phash"] for n, p in stored.items()}

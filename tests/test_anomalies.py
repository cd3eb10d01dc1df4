"""core.anomalies: k-NN / LOF / Isolation Forest scores, the Tukey fence, the report with quality
checks and reasons, reviews kept in payloads, the on-disk result cache, and per-user scoping.

Score ranking uses Collections built directly (the tiny random CLIP's vectors carry no meaning);
reports, reviews and the cache go through real Services.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import NORMAL_STATS, encode, ingest_files, pattern, synthetic_collection, textured, tiny_services
from PIL import Image

from core import anomalies
from core.anomalies import METHODS, anomaly_report, attach_reviews, detect_anomalies, tukey_threshold
from core.cache import ResultCache
from core.collection import load_collection
from core.ingest import delete_images
from core.quality import CHECKS
from core.reviews import set_anomaly_review
from core.services import Services

ALICE, BOB = "alice", "bob"
OUTLIERS = {"img-060", "img-061", "img-062"}
QUALITY_COLUMNS = [column for name in CHECKS for column in (f"{name}_score", f"is_{name}_issue")]

# --- scores on a tight cluster with three far outliers -----------------------------------------


def cluster_and_outliers(seed: int = 0, spread: float = 0.01, dim: int = 64) -> np.ndarray:
    """60 points in one tight cluster (rows 0-59) and 3 random far points (rows 60-62)."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=dim)
    centre /= np.linalg.norm(centre)
    return np.vstack([centre + spread * rng.normal(size=(60, dim)), rng.normal(size=(3, dim))])


@pytest.mark.parametrize(
    "method",
    [
        "knn",
        "lof",
        pytest.param(
            "iforest",
            marks=pytest.mark.xfail(
                strict=True,
                reason="known limitation: Isolation Forest on 50 PCA components of 60 tight points + 3 far ones "
                "splits mostly on components where the outliers sit mid-cluster; fewer components fix this "
                "set but ranked real ImageNet outliers last (AUROC 0.12, bench/anomalies_quality.py)",
            ),
        ),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_methods_rank_the_far_outliers_first(method: str, seed: int) -> None:
    collection = synthetic_collection(cluster_and_outliers(seed))
    scores = METHODS[method].scores(collection.vectors, k=10)
    assert scores.shape == (63,) and np.isfinite(scores).all()
    top = set(collection.images["id"].to_numpy()[np.argsort(-scores)[:3]])
    assert top == OUTLIERS


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iforest_ranks_the_outliers_first_when_pca_keeps_every_dimension(seed: int) -> None:
    collection = synthetic_collection(cluster_and_outliers(seed, dim=8))  # 8 components of 8
    scores = METHODS["iforest"].scores(collection.vectors)
    assert set(collection.images["id"].to_numpy()[np.argsort(-scores)[:3]]) == OUTLIERS


@pytest.mark.parametrize("n", [3, 4, 11, 12, 40])
def test_every_method_gives_one_finite_score_per_image(n: int) -> None:
    vectors = synthetic_collection(np.random.default_rng(n).normal(size=(n, 16))).vectors
    for name, method in METHODS.items():
        scores = method.scores(vectors, k=10)
        assert scores.shape == (n,) and np.isfinite(scores).all(), name


def test_identical_vectors_are_all_equally_normal() -> None:
    vectors = synthetic_collection(np.ones((20, 8))).vectors
    for name in METHODS:
        report = detect_anomalies(synthetic_collection(vectors), name)
        assert not report["is_anomaly"].any(), name
        assert np.ptp(report["anomaly_score"]) < 1e-4, name


def test_knn_score_is_the_mean_cosine_distance_to_the_k_nearest() -> None:
    vectors = synthetic_collection(np.random.default_rng(2).normal(size=(30, 8))).vectors
    similarity = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    np.fill_diagonal(similarity, -np.inf)
    nearest = -np.sort(-similarity, axis=1)[:, :5]
    np.testing.assert_allclose(METHODS["knn"].scores(vectors, k=5), (1 - nearest).mean(axis=1), atol=1e-5)


def test_tukey_threshold() -> None:
    assert tukey_threshold(np.array([1.0, 2.0, 3.0, 4.0, 100.0])) == pytest.approx(4.0 + 1.5 * 2.0)
    assert tukey_threshold(np.full(10, 0.3)) == pytest.approx(0.3)


def test_detect_anomalies_flags_above_the_tukey_fence() -> None:
    collection = synthetic_collection(cluster_and_outliers(0))
    report = detect_anomalies(collection, "knn", k=10)
    raw = METHODS["knn"].scores(collection.vectors, k=10)
    q1, q3 = np.percentile(raw, [25, 75])
    fence = q3 + 1.5 * (q3 - q1)
    assert report["anomaly_threshold"].unique().tolist() == [pytest.approx(fence, abs=1e-4)]
    by_id = report.set_index("id")
    for image_id, score in zip(collection.images["id"], raw, strict=True):
        assert by_id.loc[image_id, "is_anomaly"] == (score > fence)
        assert by_id.loc[image_id, "anomaly_score"] == pytest.approx(score, abs=1e-5)
    assert set(report.loc[report["is_anomaly"], "id"]) == OUTLIERS
    assert list(report["id"][:3].sort_values()) == sorted(OUTLIERS)
    assert report["anomaly_score"].is_monotonic_decreasing
    assert len(report) == 63 and report["id"].is_unique


def test_report_columns_and_reasons() -> None:
    vectors = cluster_and_outliers(0)
    quality = [dict(NORMAL_STATS)] * 63
    quality[5] = {**quality[5], "brightness": 0.02, "brightness_p90": 0.03}  # dark, otherwise an ordinary member
    quality[61] = {**quality[61], "colorfulness": 0.0}  # a far outlier and grayscale
    collection = synthetic_collection(vectors, quality=quality)
    report = detect_anomalies(collection, "knn").set_index("id")
    for column in ["filename", "width", "height", "bytes", "thumbnail_key", "created_at", "anomaly_score"]:
        assert column in report.columns
    assert [c for c in report.columns if c in QUALITY_COLUMNS] == QUALITY_COLUMNS
    for name in CHECKS:
        assert report[f"{name}_score"].between(0, 1).all(), name
        assert report[f"is_{name}_issue"].dtype == bool, name
    assert report.loc["img-005", "is_dark_issue"] and not report.loc["img-005", "is_anomaly"]
    dark, gray = report.loc["img-005", "dark_score"], report.loc["img-061", "grayscale_score"]
    assert report.loc["img-005", "reasons"] == f"too dark ({dark:.2f} < {CHECKS['dark'].threshold:g})"
    grayscale = f"grayscale ({gray:.2f} < {CHECKS['grayscale'].threshold:g})"
    assert report.loc["img-061", "reasons"] == f"unlike the rest of the collection, {grayscale}"
    assert report.loc["img-060", "reasons"] == "unlike the rest of the collection"
    assert report.loc["img-000", "reasons"] == ""

    bare = detect_anomalies(collection, "knn", checks=False)
    assert not set(QUALITY_COLUMNS) & set(bare.columns)
    assert set(bare.loc[bare["is_anomaly"], "id"]) == OUTLIERS


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fewer_than_three_images_flag_nothing(n: int) -> None:
    collection = synthetic_collection(np.random.default_rng(0).normal(size=(n, 8)))
    for method in ("knn", "iforest", "lof"):
        report = detect_anomalies(collection, method)
        assert len(report) == n
        assert not report["is_anomaly"].any()
        assert (report["anomaly_score"] == 0).all()
        assert list(report["reasons"]) == [""] * n


def test_unknown_method_raises() -> None:
    collection = synthetic_collection(cluster_and_outliers(0))
    with pytest.raises(ValueError, match="unknown method 'zscore'"):
        detect_anomalies(collection, "zscore")


# --- through real services -----------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def services(data_dir: Path) -> Iterator[Services]:
    with tiny_services(data_dir) as services:
        yield services


def alice_files() -> dict[str, bytes]:
    files = {f"photo-{i}.png": encode(textured(i), "PNG") for i in range(6)}
    files["black.png"] = encode(Image.new("RGB", (256, 192), (3, 3, 3)), "PNG")
    return files


@pytest.fixture
def alice(services: Services) -> dict[str, str]:
    return ingest_files(services, ALICE, alice_files())


def test_report_through_services_has_quality_checks(services: Services, alice: dict[str, str]) -> None:
    report = anomaly_report(services, ALICE)
    assert set(report["id"]) == set(alice.values())
    assert [c for c in report.columns if c in QUALITY_COLUMNS] == QUALITY_COLUMNS
    assert list(report["review"]) == [""] * len(report)
    row = report.set_index("filename").loc["black.png"]
    assert row["is_dark_issue"] and row["is_low_information_issue"]
    assert "too dark" in row["reasons"] and "low information" in row["reasons"]
    photos = report[report["filename"] != "black.png"]
    assert not photos[[f"is_{name}_issue" for name in CHECKS]].to_numpy().any()
    with pytest.raises(ValueError, match="unknown method"):
        anomaly_report(services, ALICE, method="nope")


def test_two_images_or_none_through_services(services: Services) -> None:
    empty = anomaly_report(services, ALICE)
    assert empty.empty and {"id", "anomaly_score", "is_anomaly", "reasons", "review"} <= set(empty.columns)
    ingest_files(services, ALICE, {"a.png": encode(textured(0), "PNG"), "b.png": encode(textured(1), "PNG")})
    for method in METHODS:
        report = anomaly_report(services, ALICE, method=method)
        assert len(report) == 2 and not report["is_anomaly"].any()


def reviews_of(services: Services, user: str = ALICE) -> dict[str, str]:
    report = anomaly_report(services, user)
    return dict(zip(report["filename"], report["review"], strict=True))


def test_reviews_persist_across_a_restart(data_dir: Path) -> None:
    with tiny_services(data_dir) as services:
        ids = ingest_files(services, ALICE, alice_files())
        set_anomaly_review(services.index, ALICE, [ids["black.png"]], "confirmed")
        set_anomaly_review(services.index, ALICE, [ids["photo-0.png"], ids["photo-1.png"]], "normal")
        assert reviews_of(services) == {
            **{name: "" for name in ids},
            "black.png": "confirmed",
            "photo-0.png": "normal",
            "photo-1.png": "normal",
        }
    with tiny_services(data_dir) as services:
        after = reviews_of(services)
        assert after["black.png"] == "confirmed"
        assert (after["photo-0.png"], after["photo-1.png"], after["photo-2.png"]) == ("normal", "normal", "")
        set_anomaly_review(services.index, ALICE, [ids["photo-0.png"]], None)
        set_anomaly_review(services.index, ALICE, [ids["black.png"]], "normal")
    with tiny_services(data_dir) as services:
        after = reviews_of(services)
        assert (after["black.png"], after["photo-0.png"], after["photo-1.png"]) == ("normal", "", "normal")


def test_invalid_review_status_raises_and_changes_nothing(services: Services, alice: dict[str, str]) -> None:
    set_anomaly_review(services.index, ALICE, [alice["black.png"]], "confirmed")
    for status in ("Confirmed", "anomaly", "", "none"):
        with pytest.raises(ValueError, match="review must be one of"):
            set_anomaly_review(services.index, ALICE, [alice["black.png"]], status)
    assert reviews_of(services)["black.png"] == "confirmed"


def test_reviews_of_another_users_images_are_ignored(services: Services, alice: dict[str, str]) -> None:
    set_anomaly_review(services.index, BOB, [alice["black.png"]], "confirmed")
    assert reviews_of(services)["black.png"] == ""


def test_attach_reviews_ignores_unknown_values() -> None:
    report = pd.DataFrame({"id": ["a", "b", "c", "d"], "anomaly_score": [4.0, 3.0, 2.0, 1.0]})
    images = pd.DataFrame({"id": ["d", "c", "b", "a"], "anomaly_review": ["normal", None, "weird", "confirmed"]})
    out = attach_reviews(report, images)
    assert list(out["review"]) == ["confirmed", "", "", "normal"]
    assert "review" not in report.columns  # the input is left alone
    assert list(attach_reviews(report, images.drop(columns="anomaly_review"))["review"]) == [""] * 4


def test_cached_report_is_reused_until_the_collection_changes(
    services: Services, alice: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = anomalies.detect_anomalies

    def counting(collection, method="knn", k=10, checks=True):  # type: ignore[no-untyped-def]
        calls.append(method)
        return real(collection, method, k, checks)

    monkeypatch.setattr(anomalies, "detect_anomalies", counting)
    cache = ResultCache(tmp_path / "cache")

    first = anomaly_report(services, ALICE, cache=cache)
    second = anomaly_report(services, ALICE, cache=cache)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first, second)
    assert list((tmp_path / "cache" / ALICE).glob("anomalies-*.pkl"))

    anomaly_report(services, ALICE, method="iforest", cache=cache)
    anomaly_report(services, ALICE, k=3, cache=cache)
    assert len(calls) == 3
    anomaly_report(services, ALICE, cache=cache)
    assert len(calls) == 3

    # reviews are attached after the cache: a new review shows without recomputing
    set_anomaly_review(services.index, ALICE, [alice["photo-3.png"]], "confirmed")
    reviewed = anomaly_report(services, ALICE, cache=cache)
    assert len(calls) == 3
    assert reviewed.set_index("filename").loc["photo-3.png", "review"] == "confirmed"

    added = ingest_files(services, ALICE, {"new.png": encode(pattern(9, (256, 192)), "PNG")})
    with_new = anomaly_report(services, ALICE, cache=cache)
    assert len(calls) == 4
    assert added["new.png"] in set(with_new["id"])
    anomaly_report(services, ALICE, cache=cache)
    assert len(calls) == 4

    assert delete_images(services.store, services.index, ALICE, [alice["photo-0.png"]]) == 1
    without = anomaly_report(services, ALICE, cache=cache)
    assert len(calls) == 5
    assert alice["photo-0.png"] not in set(without["id"])
    assert len(without) == len(alice)

    # back to the first set of images: same fingerprint, the first entry is still there
    delete_images(services.store, services.index, ALICE, [added["new.png"]])
    ingest_files(services, ALICE, {"photo-0.png": alice_files()["photo-0.png"]})
    again = anomaly_report(services, ALICE, cache=cache)
    assert len(calls) == 5
    assert set(again["id"]) == set(first["id"])


def test_fingerprint_depends_on_the_set_of_ids_only(services: Services, alice: dict[str, str]) -> None:
    collection = load_collection(services, ALICE)
    shuffled = collection.images.sample(frac=1, random_state=0).reset_index(drop=True)
    assert type(collection)(ALICE, shuffled, collection.vectors).fingerprint == collection.fingerprint
    assert type(collection)(BOB, collection.images, collection.vectors).fingerprint != collection.fingerprint
    fewer = collection.images.iloc[1:].reset_index(drop=True)
    assert type(collection)(ALICE, fewer, collection.vectors[1:]).fingerprint != collection.fingerprint


def test_scores_never_include_other_users_images(services: Services, alice: dict[str, str]) -> None:
    before = anomaly_report(services, ALICE).set_index("id")["anomaly_score"]
    bob = ingest_files(services, BOB, {f"bob-{i}.png": encode(pattern(100 + i, (256, 192)), "PNG") for i in range(8)})
    # Bob also owns copies of Alice's files: they would be her nearest neighbours if shared
    bob |= ingest_files(services, BOB, alice_files())
    for method in ("knn", "iforest"):
        report = anomaly_report(services, ALICE, method=method)
        assert set(report["id"]) == set(alice.values())
        assert not set(report["id"]) & set(bob.values())
    after = anomaly_report(services, ALICE).set_index("id")["anomaly_score"]
    pd.testing.assert_series_equal(before.sort_index(), after.sort_index())
    bobs = anomaly_report(services, BOB)
    assert set(bobs["id"]) == set(bob.values())

"""core.quality: per-image stats and the registered checks; the stats ingest stores in payloads
(``quality``, with ``pixel_sha256``) and the backfill core.collection does for older payloads."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REAL_PHOTOS, encode, ingest_files, jpeg, textured, tiny_services
from PIL import Image, ImageFilter

from bench.quality_flags import VARIANTS, jpeg_bytes
from core.collection import load_collection
from core.hashing import pixel_sha256
from core.images import decode, open_rgb
from core.quality import CHECKS, STAT_COLUMNS, STAT_NAMES, image_stats, lacks_stats, run_checks, stats_frame
from core.services import Services

ALICE = "alice"
OLD_STATS = {"brightness", "contrast", "sharpness", "entropy", "colorfulness"}


def frame_of(images: dict[str, Image.Image], sizes: dict[str, tuple[int, int]] | None = None) -> pd.DataFrame:
    """What load_collection gives the checks: id, width, height and the q_* stats."""
    sizes = sizes or {}
    rows = []
    for name, image in images.items():
        width, height = sizes.get(name, image.size)
        rows.append({"id": name, "width": width, "height": height, "quality": image_stats(image)})
    frame = pd.DataFrame(rows)
    return pd.concat([frame, stats_frame(frame["quality"])], axis=1)


def flagged(frame: pd.DataFrame) -> dict[str, set[str]]:
    """{image id: names of the checks that flag it}."""
    checks = run_checks(frame)
    return {
        image_id: {name for name in CHECKS if checks.loc[row, f"is_{name}_issue"]}
        for row, image_id in zip(frame.index, frame["id"], strict=True)
    }


def scaled(image: Image.Image, factor: float, towards: int = 0) -> Image.Image:
    """Pixel values pulled towards ``towards`` (0 = black, 255 = white) by ``factor``."""
    pixels = np.asarray(image, dtype=np.float32)
    return Image.fromarray((towards + (pixels - towards) * factor).round().astype(np.uint8), "RGB")


def normal_photos(count: int = 6) -> dict[str, Image.Image]:
    return {f"photo-{i}": textured(i) for i in range(count)}


# --- the checks on generated images -------------------------------------------------------------


def test_photo_like_images_are_not_flagged() -> None:
    result = flagged(frame_of(normal_photos(8)))
    assert result == {f"photo-{i}": set() for i in range(8)}


@pytest.mark.parametrize(
    ("name", "make", "check"),
    [
        ("near-black", lambda: scaled(textured(20), 0.06), "dark"),
        ("black", lambda: Image.new("RGB", (256, 192)), "dark"),
        ("near-white", lambda: scaled(textured(21), 0.06, towards=255), "bright"),
        ("white", lambda: Image.new("RGB", (256, 192), (255, 255, 255)), "bright"),
        ("blurred", lambda: textured(22).filter(ImageFilter.GaussianBlur(6)), "blurry"),
        ("one-colour", lambda: Image.new("RGB", (256, 192), (180, 90, 40)), "low_information"),
        ("gray", lambda: textured(23).convert("L").convert("RGB"), "grayscale"),
    ],
)
def test_made_up_problem_images_are_flagged(name: str, make, check: str) -> None:
    images = {**normal_photos(), name: make()}
    result = flagged(frame_of(images))
    assert check in result[name], result[name]
    assert all(not checks for image_id, checks in result.items() if image_id != name), result
    opposite = {"dark": "bright", "bright": "dark"}.get(check)
    if opposite:
        assert opposite not in result[name]


def test_sharp_image_and_its_blurred_copy() -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (192, 256, 3), dtype=np.uint8), "RGB")
    board = Image.fromarray((np.indices((192, 256)).sum(axis=0) // 8 % 2 * 200 + 28).astype(np.uint8)).convert("RGB")
    images = {
        "noise": noise,
        "noise-blurred": noise.filter(ImageFilter.GaussianBlur(5)),
        "board": board,
        "board-blurred": board.filter(ImageFilter.GaussianBlur(5)),
    }
    frame = frame_of(images).set_index("id")
    assert frame.loc["noise", "q_sharpness"] > 100 * frame.loc["noise-blurred", "q_sharpness"]
    assert frame.loc["board", "q_sharpness"] > 10 * frame.loc["board-blurred", "q_sharpness"]
    checks = run_checks(frame.reset_index()).set_axis(frame.index)
    assert list(checks["is_blurry_issue"]) == [False, True, False, True]
    assert checks.loc["noise", "blurry_score"] > checks.loc["noise-blurred", "blurry_score"]


@pytest.mark.parametrize(
    ("size", "expected"),
    [((1000, 100), True), ((100, 1000), True), ((260, 100), True), ((240, 100), False), ((640, 480), False)],
)
def test_odd_aspect_ratio_over_two_and_a_half(size: tuple[int, int], expected: bool) -> None:
    images = {**normal_photos(), "subject": textured(30)}
    result = flagged(frame_of(images, {"subject": size}))
    assert ("odd_aspect_ratio" in result["subject"]) is expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((64, 48), True),  # 100 times fewer pixels than the others
        ((213, 160), True),  # 9 times fewer
        ((242, 181), False),  # 7 times fewer
        ((1920, 1440), True),  # 9 times more
        ((1600, 1200), False),  # 6.25 times more
        ((640, 480), False),
    ],
)
def test_odd_size_against_the_collections_median(size: tuple[int, int], expected: bool) -> None:
    images = {**normal_photos(), "subject": textured(31)}
    sizes = {name: (640, 480) for name in images} | {"subject": size}
    result = flagged(frame_of(images, sizes))
    assert ("odd_size" in result["subject"]) is expected
    assert all("odd_size" not in checks for image_id, checks in result.items() if image_id != "subject")


def test_odd_size_for_a_side_under_32_pixels() -> None:
    images = {**normal_photos(), "narrow": textured(32)}
    sizes = {name: (40, 40) for name in images} | {"narrow": (31, 40)}
    result = flagged(frame_of(images, sizes))
    assert result["narrow"] == {"odd_size"}
    assert all(not checks for image_id, checks in result.items() if image_id != "narrow")


def test_scores_and_columns_for_every_check() -> None:
    images = {
        **normal_photos(3),
        "black": Image.new("RGB", (256, 192)),
        "white": Image.new("RGB", (256, 192), (255, 255, 255)),
        "gray": Image.new("RGB", (256, 192), (128, 128, 128)),
        "noise": Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB"),
        "huge": textured(40),
    }
    frame = frame_of(images, {"huge": (20_000, 20), "noise": (2, 2)})
    checks = run_checks(frame)
    assert list(checks.columns) == [c for name in CHECKS for c in (f"{name}_score", f"is_{name}_issue")]
    assert list(checks.index) == list(frame.index)
    for name in CHECKS:
        scores = checks[f"{name}_score"]
        assert scores.notna().all() and scores.between(0.0, 1.0).all(), (name, scores.tolist())
        assert checks[f"is_{name}_issue"].dtype == bool
        assert (checks[f"is_{name}_issue"] == (scores < CHECKS[name].threshold)).all()
    assert set(CHECKS) == {"dark", "bright", "blurry", "low_information", "grayscale", "odd_aspect_ratio", "odd_size"}


def test_run_checks_by_name_and_without_stats() -> None:
    frame = frame_of({"black": Image.new("RGB", (256, 192)), **normal_photos(2)})
    only = run_checks(frame, ["dark", "odd_size"])
    assert list(only.columns) == ["dark_score", "is_dark_issue", "odd_size_score", "is_odd_size_issue"]
    assert list(only["is_dark_issue"]) == [True, False, False]

    missing = frame.copy()
    missing.loc[0, STAT_COLUMNS] = np.nan  # an image whose stats could not be measured
    checks = run_checks(missing)
    for name in ("dark", "bright", "blurry", "low_information", "grayscale"):
        assert math.isnan(checks.loc[0, f"{name}_score"]) and not checks.loc[0, f"is_{name}_issue"], name


def test_stats_frame_reads_quality_payloads() -> None:
    payloads = pd.Series([{"brightness": 0.25, "entropy": 5.0}, None, {}], index=[4, 5, 6])
    frame = stats_frame(payloads)
    assert list(frame.columns) == STAT_COLUMNS
    assert list(frame.index) == [4, 5, 6]
    assert frame.loc[4, "q_brightness"] == 0.25 and frame.loc[4, "q_entropy"] == 5.0
    assert frame.loc[4, ["q_contrast", "q_sharpness", "q_colorfulness"]].isna().all()
    assert frame.loc[[5, 6]].isna().all().all()


def test_image_stats_values() -> None:
    black = image_stats(Image.new("RGB", (64, 64)))
    assert set(black) == set(STAT_NAMES)
    assert black["brightness"] == 0 and black["contrast"] == 0 and black["entropy"] == 0
    white = image_stats(Image.new("RGB", (64, 64), (255, 255, 255)))
    assert white["brightness"] == pytest.approx(1.0)
    halves = np.zeros((64, 64, 3), np.uint8)
    halves[:, 32:] = 255
    two_tones = image_stats(Image.fromarray(halves, "RGB"))
    assert two_tones["entropy"] == pytest.approx(1.0)
    assert two_tones["contrast"] == pytest.approx(0.5)
    assert two_tones["colorfulness"] == pytest.approx(0.0, abs=1e-6)
    red = image_stats(Image.new("RGB", (64, 64), (255, 0, 0)))
    assert red["colorfulness"] > 0.2
    assert image_stats(Image.new("L", (64, 64), 77)) == image_stats(Image.new("RGB", (64, 64), (77, 77, 77)))


def reference_stats(image: Image.Image) -> dict[str, float]:
    """The stats written plainly, on float copies of the image (as image_stats first measured them)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255
    grey = image.convert("L")
    levels = np.asarray(grey, dtype=np.float64)
    filtered = grey.filter(ImageFilter.Kernel((3, 3), [0, 1, 0, 1, -4, 1, 0, 1, 0], 1, 128))
    laplacian = np.asarray(filtered, dtype=np.float64)[1:-1, 1:-1] - 128
    rg, yb = rgb[..., 0] - rgb[..., 1], (rgb[..., 0] + rgb[..., 1]) / 2 - rgb[..., 2]
    return {
        "brightness": levels.mean() / 255,
        "contrast": levels.std() / 255,
        "sharpness": laplacian.var() if laplacian.size else 0.0,
        "colorfulness": math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()),
    }


@pytest.mark.parametrize("size", [(1, 1), (2, 7), (3, 3), (64, 48), (301, 257)])
def test_image_stats_counted_on_integers_equal_the_plain_float_formulas(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(size[0])
    noisy = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    photo = textured(size[1], size)
    for image in (noisy, photo, photo.convert("L")):
        measured = image_stats(image)
        for name, value in reference_stats(image).items():
            assert measured[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


@pytest.mark.parametrize(
    "colour",
    [
        (128, 128, 128),
        (0, 0, 0),
        (255, 255, 255),
        (180, 90, 40),
    ],
)
def test_a_single_colour_has_no_detail_whatever_the_colour(colour: tuple[int, int, int]) -> None:
    assert image_stats(Image.new("RGB", (256, 192), colour))["sharpness"] == pytest.approx(0.0, abs=1e-6)


def test_a_blurred_dark_photo_is_flagged_blurry() -> None:
    dark = scaled(textured(50), 0.25)
    images = {**normal_photos(), "dark": dark, "dark-blurred": dark.filter(ImageFilter.GaussianBlur(8))}
    result = flagged(frame_of(images))
    assert "blurry" not in result["dark"]
    assert "blurry" in result["dark-blurred"]


# --- calibrated rules: made-to-be-bad copies of a full-size photo through the ingest decode ---------


def full_size_photo(seed: int) -> Image.Image:
    """A camera-sized photo-like image: ingest reduces it to the ~256 px working copy."""
    return textured(seed, size=(768, 576))


@pytest.mark.parametrize("kind", list(VARIANTS))
@pytest.mark.parametrize("seed", [0, 1])
def test_made_to_be_bad_copies_of_a_full_size_photo_are_flagged(kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    images = {f"photo-{i}": full_size_photo(60 + i) for i in range(4)}
    images[kind] = VARIANTS[kind](full_size_photo(70 + seed), rng)
    frame = frame_of({name: decode(jpeg_bytes(image)).image for name, image in images.items()})
    result = flagged(frame)
    assert result[kind] == {kind}, result[kind]  # a dark copy is not also blurry, nor a washed-out one grey
    assert all(not checks for name, checks in result.items() if name != kind), result


def night_scene() -> Image.Image:
    """A dark scene with a lit subject: 80 % of it near black, a lit window of ordinary tones."""
    scene = np.asarray(scaled(textured(80), 0.1), dtype=np.uint8).copy()
    scene[40:150, 60:180] = np.asarray(textured(81))[40:150, 60:180]
    return Image.fromarray(scene, "RGB")


def product_on_white() -> Image.Image:
    """A textured product on a white background that covers 72 % of the picture."""
    shot = np.full((192, 256, 3), 250, dtype=np.uint8)
    shot[50:150, 60:200] = np.asarray(textured(82))[50:150, 60:200]
    return Image.fromarray(shot, "RGB")


def smooth_sky_with_a_bird() -> Image.Image:
    """A smooth blue gradient with a small sharp subject (4 % of the pixels): little fine detail overall."""
    rows = np.linspace(0.0, 1.0, 192)[:, None, None]
    sky = (np.array([70, 120, 200]) + rows * np.array([90, 80, 40])) * np.ones((1, 256, 1))
    sky[90:130, 110:160] = np.asarray(textured(83))[90:130, 110:160]
    return Image.fromarray(sky.round().astype(np.uint8), "RGB")


def foggy() -> Image.Image:
    """A sharp photo with little contrast: every tone pulled to within 20 % of mid-grey."""
    return scaled(textured(84), 0.2, towards=128)


def sepia() -> Image.Image:
    gray = np.asarray(textured(85).convert("L"), dtype=np.float32)[..., None]
    return Image.fromarray(
        np.clip(gray * np.array([1.07, 0.74, 0.43]) + np.array([30, 20, 0]), 0, 255).astype(np.uint8)
    )


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("night scene", night_scene, set()),
        # one flat white tone over 72 % of the picture: few distinct tones, yet not too bright
        ("product on white", product_on_white, {"low_information"}),
        ("smooth sky with a bird", smooth_sky_with_a_bird, set()),
        ("foggy", foggy, set()),
        ("sepia", sepia, set()),
        ("dark but sharp", lambda: scaled(textured(86), 0.3), set()),
    ],
)
def test_ordinary_photos_of_dark_white_smooth_or_toned_scenes_are_not_flagged(
    name: str, make, expected: set[str]
) -> None:
    result = flagged(frame_of({**normal_photos(), name: make()}))
    assert result[name] == expected, result[name]


def test_edge_sharpness_ignores_contrast_but_not_blur() -> None:
    photo = textured(90)
    sharp = image_stats(photo)["edge_sharpness"]
    for copy in (scaled(photo, 0.3), scaled(photo, 0.3, towards=255), scaled(photo, 0.3, towards=128)):
        assert image_stats(copy)["edge_sharpness"] == pytest.approx(sharp, rel=0.2)
    # under a tonal range of MIN_TONAL_RANGE (a copy at 15 % of its range) the value drops, but
    # stays far from blurry
    assert 0.2 < image_stats(scaled(photo, 0.15))["edge_sharpness"] < sharp
    blurred = image_stats(photo.filter(ImageFilter.GaussianBlur(2)))["edge_sharpness"]
    assert blurred < 0.08 < 0.2 < sharp
    # grain on a near-uniform image is not taken for sharp edges
    grain = np.random.default_rng(0).normal(128, 2, (192, 256, 1)).round().clip(0, 255).astype(np.uint8)
    flat = Image.fromarray(np.repeat(grain, 3, axis=2), "RGB").filter(ImageFilter.GaussianBlur(3))
    assert image_stats(flat)["edge_sharpness"] < 0.08


def test_thresholds_are_the_documented_rules() -> None:
    """Each description states the rule: the score crosses its threshold exactly at that value."""
    edge = {"dark": ("q_brightness_p90", 0.18), "bright": ("q_brightness_p10", 0.82)}
    edge |= {"blurry": ("q_edge_sharpness", 0.08), "grayscale": ("q_colorfulness", 0.005)}
    edge |= {"low_information": ("q_entropy", 3.6)}
    for name, (column, value) in edge.items():
        frame = pd.DataFrame({column: [value * 0.98, value * 1.02]})
        issues = run_checks(frame, [name])[f"is_{name}_issue"].tolist()
        expected = [False, True] if name == "bright" else [True, False]
        assert issues == expected, name
        assert f"{round(100 * value) if name in ('dark', 'bright') else value}" in CHECKS[name].description, name


def test_payloads_stored_before_a_stat_existed_score_nan_and_are_not_flagged() -> None:
    """An older ingest stored only brightness, contrast, sharpness, entropy and colourfulness."""
    old = {k: v for k, v in image_stats(Image.new("RGB", (256, 192))).items() if k in OLD_STATS}
    frame = pd.DataFrame({"id": ["old"], "width": [256], "height": [192], "quality": [old]})
    frame = pd.concat([frame, stats_frame(frame["quality"])], axis=1)
    checks = run_checks(frame)
    for name in ("dark", "bright", "blurry"):
        assert math.isnan(checks.loc[0, f"{name}_score"]) and not checks.loc[0, f"is_{name}_issue"], name
    assert checks.loc[0, "is_low_information_issue"] and checks.loc[0, "is_grayscale_issue"]
    assert lacks_stats(old) and lacks_stats(None) and lacks_stats({})
    assert not lacks_stats(image_stats(textured(1)))


def real_photo_rows(paths: list[Path]) -> pd.DataFrame:
    """What ingest measures of each photo (the working copy's stats), as the checks read them."""
    rows = []
    for path in paths:
        decoded = decode(path.read_bytes())
        rows.append({"id": path.name, "width": decoded.width, "height": decoded.height, **image_stats(decoded.image)})
    return pd.DataFrame(rows).rename(columns=dict(zip(STAT_NAMES, STAT_COLUMNS, strict=True)))


def test_real_photos_are_rarely_flagged() -> None:
    """At most 2 % of good photos per check (bench/quality_flags.py measures all 1,000); grayscale
    flags only the photos that have no colour at all."""
    photos = sorted(REAL_PHOTOS.glob("*.JPEG"))[::2] if REAL_PHOTOS.is_dir() else []
    if len(photos) < 400:
        pytest.skip(f"no sample photos in {REAL_PHOTOS}")
    frame = real_photo_rows(photos)
    checks = run_checks(frame)
    shares = checks[[f"is_{name}_issue" for name in CHECKS if name != "grayscale"]].mean()
    assert (shares <= 0.02).all(), shares.to_dict()
    for name in checks.index[checks["is_grayscale_issue"]]:
        with Image.open(photos[name]) as photo:
            channels = np.asarray(photo.convert("RGB"), dtype=np.int16)
            assert photo.mode == "L" or np.abs(np.diff(channels, axis=2)).mean() < 2, photos[name]


# --- stats stored at ingest, backfilled for older payloads --------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def services(data_dir: Path) -> Iterator[Services]:
    with tiny_services(data_dir) as services:
        yield services


def ingest_set() -> dict[str, bytes]:
    return {
        "photo.png": encode(textured(1), "PNG"),
        "photo.jpg": jpeg(seed=3, size=(600, 400), quality=90),
        "black.png": encode(Image.new("RGB", (300, 200)), "PNG"),
        "same-pixels.webp": encode(textured(1), "WEBP", lossless=True),
    }


def test_ingest_stores_quality_and_pixel_sha256(services: Services) -> None:
    files = ingest_set()
    ids = ingest_files(services, ALICE, files)
    records = {r.payload["filename"]: r.payload for r in services.index.retrieve(ALICE, list(ids.values()))}
    for name, data in files.items():
        working = decode(data).image
        payload = records[name]
        assert payload["quality"] == pytest.approx(image_stats(working)), name
        assert set(payload["quality"]) == set(STAT_NAMES)
        assert payload["pixel_sha256"] == pixel_sha256(working)
        assert len(payload["pixel_sha256"]) == 64
    assert records["photo.png"]["pixel_sha256"] == records["same-pixels.webp"]["pixel_sha256"]
    assert records["photo.png"]["sha256"] != records["same-pixels.webp"]["sha256"]
    assert len({p["pixel_sha256"] for p in records.values()}) == 3
    assert records["black.png"]["quality"]["brightness"] == 0.0

    images = load_collection(services, ALICE).images.set_index("filename")
    for name in files:
        for stat in STAT_NAMES:
            assert images.loc[name, f"q_{stat}"] == pytest.approx(records[name]["quality"][stat])


def test_load_collection_backfills_missing_quality_and_persists_it(data_dir: Path) -> None:
    """Payloads without stats, or with the stats of an older version, are measured again from the
    original, the way ingest measures them, and the result is saved."""
    with tiny_services(data_dir) as services:
        ids = ingest_files(services, ALICE, ingest_set())
        original = {r.id: r.payload["quality"] for r in services.index.scroll(ALICE)}
        old = [ids["photo.jpg"], ids["black.png"]]
        services.index.set_payload(ALICE, [old[0]], {"quality": None})
        older_keys = {k: v for k, v in original[old[1]].items() if k not in ("brightness_p90", "edge_sharpness")}
        services.index.set_payload(ALICE, [old[1]], {"quality": older_keys})
        assert lacks_stats(services.index.retrieve(ALICE, [old[1]])[0].payload["quality"])

        collection = load_collection(services, ALICE)
        images = collection.images.set_index("id")
        assert images[STAT_COLUMNS].notna().all().all()
        stored = {r.id: r.payload for r in services.index.scroll(ALICE)}
        for image_id in old:
            assert stored[image_id]["quality"] == pytest.approx(original[image_id])  # as ingest measured
            assert images.loc[image_id, "quality"] == pytest.approx(original[image_id])
        for image_id in set(ids.values()) - set(old):
            assert stored[image_id]["quality"] == original[image_id]  # untouched

    with tiny_services(data_dir) as services:
        again = {r.id: r.payload["quality"] for r in services.index.scroll(ALICE)}
        assert not any(lacks_stats(again[image_id]) for image_id in old)
        assert load_collection(services, ALICE).images[STAT_COLUMNS].notna().all().all()


def test_backfill_falls_back_to_the_thumbnail_when_the_original_is_gone(services: Services) -> None:
    ids = ingest_files(services, ALICE, ingest_set())
    (record,) = services.index.retrieve(ALICE, [ids["photo.jpg"]])
    services.index.set_payload(ALICE, [ids["photo.jpg"]], {"quality": None})
    services.store.delete(record.payload["original_key"])

    images = load_collection(services, ALICE).images.set_index("id")
    expected = image_stats(open_rgb(services.store.get(record.payload["thumbnail_key"])))
    assert images.loc[ids["photo.jpg"], "quality"] == pytest.approx(expected)
    # from the thumbnail, close to what ingest measured on the working copy
    assert expected["brightness"] == pytest.approx(record.payload["quality"]["brightness"], abs=0.03)


def test_backfill_with_nothing_readable_leaves_the_stats_blank(services: Services) -> None:
    ids = ingest_files(services, ALICE, ingest_set())
    (record,) = services.index.retrieve(ALICE, [ids["photo.jpg"]])
    services.index.set_payload(ALICE, [ids["photo.jpg"]], {"quality": None})
    services.store.delete(record.payload["original_key"])
    services.store.delete(record.payload["thumbnail_key"])

    images = load_collection(services, ALICE).images.set_index("id")
    assert images.loc[ids["photo.jpg"], STAT_COLUMNS].isna().all()
    assert images.drop(index=ids["photo.jpg"])[STAT_COLUMNS].notna().all().all()
    (record,) = services.index.retrieve(ALICE, [ids["photo.jpg"]])
    assert record.payload.get("quality") is None  # not written back
    checks = run_checks(images.reset_index())
    assert not checks.iloc[list(images.index).index(ids["photo.jpg"])].filter(like="is_").any()


def test_empty_collection(services: Services) -> None:
    collection = load_collection(services, ALICE)
    assert len(collection) == 0 and collection.vectors.shape == (0, services.embedder.dimension)

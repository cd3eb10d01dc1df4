"""Duplicate quality on transformed copies of real photos: recall and precision per level and
transform, a sweep of the semantic threshold, and imagededup's PHash side by side.

    python -m bench.duplicates_quality [../shared/datasets/imagenet-sample/images] [--originals 200] [--seed 0]
        [--model efficientnet-lite0]

``--originals`` photos (fixed seed) each get one copy per transform (resize 50 %, JPEG quality
30-70, crop 5-20 % of each side, brightness +-10-20 %, rotation 3-5 degrees without expanding,
horizontal flip); the other photos are distractors. Everything is ingested once, for one user,
with the real pipeline (EfficientNet-Lite0 on CPU unless ``--model`` names another) into a
temporary data folder.

Each transform is scored on its own collection: all the photos plus that transform's copies
(hashes and vectors come from the one ingest). A true pair is (original, its copy); recall is the
fraction of them in the same cluster. A predicted pair is any two images in one cluster (for
imagededup: a reported duplicate); precision for a transform is the share of the predicted pairs
involving its copies that are true. The "all copies" rows pool the six collections: precision
there counts every predicted pair, so false pairs between two different photos count too.
A second table runs the one collection that holds every copy at once, where copies of the same
photo are duplicates of each other (a pair is correct when both come from the same photo).
Needs ``imagededup`` for the comparison (requirements-bench.txt); without it that column is skipped.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from bench.common import peak_rss_mb, timer
from bench.tables import pct, table
from core.collection import Collection, load_collection
from core.duplicates import DEFAULT_NEAR_THRESHOLD, LEVELS, Cluster, DuplicateFinder, default_semantic_threshold
from core.hashing import phash_hex
from core.images import decode
from core.services import open_services
from core.settings import load_settings
from core.sources import items_from_paths

DEFAULT_MODEL = "efficientnet-lite0"
DEFAULT_PHOTOS = Path("../shared/datasets/imagenet-sample/images")
SMALL_SIDE = 32  # px, the longer side of every file in the small-images case
SEPARATOR = "__"  # copies are named <original stem>__<transform>.jpg
SWEEP = [round(t, 2) for t in np.arange(0.70, 0.981, 0.02)]
LEVEL_SETS = {"near": ("near",), "semantic": ("semantic",), "all levels": LEVELS}

Transform = Callable[[Image.Image, np.random.Generator], tuple[Image.Image, int]]
Pair = tuple[str, str]


def _resize(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    size = (max(1, image.width // 2), max(1, image.height // 2))
    return image.resize(size, Image.Resampling.LANCZOS), 95


def _jpeg(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    return image, int(rng.integers(30, 71))


def _crop(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    cut_w, cut_h = (rng.uniform(0.05, 0.20) * side for side in image.size)
    left, top = rng.uniform(0, cut_w), rng.uniform(0, cut_h)
    box = (round(left), round(top), round(image.width - (cut_w - left)), round(image.height - (cut_h - top)))
    return image.crop(box), 95


def _brightness(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    factor = 1.0 + rng.choice([-1.0, 1.0]) * rng.uniform(0.10, 0.20)
    return ImageEnhance.Brightness(image).enhance(factor), 95


def _rotate(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    angle = rng.choice([-1.0, 1.0]) * rng.uniform(3.0, 5.0)
    return image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False), 95


def _flip(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    return ImageOps.mirror(image), 95


def _border_solid(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    """A 10 % border of one colour (white, black, grey or any) on every side."""
    colours = [(255, 255, 255), (0, 0, 0), (128, 128, 128), tuple(int(c) for c in rng.integers(0, 256, 3))]
    colour = colours[int(rng.integers(len(colours)))]
    border = (round(0.1 * image.width), round(0.1 * image.height))
    return ImageOps.expand(image, border=(*border, *border), fill=colour), 95


def _border_blur(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    """A 10 % border of the photo itself, enlarged and blurred (the 'blurred background' look)."""
    size = (round(1.2 * image.width), round(1.2 * image.height))
    canvas = image.resize(size, Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(max(size) / 30))
    canvas.paste(image, ((size[0] - image.width) // 2, (size[1] - image.height) // 2))
    return canvas, 95


def _letterbox(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    """Padded with black bars to 16:9 (pillarbox for upright photos, letterbox for wide ones)."""
    width, height = image.size
    size = (round(height * 16 / 9), height) if width * 9 < height * 16 else (width, round(width * 9 / 16))
    canvas = Image.new("RGB", size)
    canvas.paste(image, ((size[0] - width) // 2, (size[1] - height) // 2))
    return canvas, 95


def _frame(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    """The photo at 70-85 % of a screenshot-like frame: a title bar with window buttons and a
    title, a bottom bar with icons, a flat background around the photo."""
    share = rng.uniform(0.70, 0.85)
    width, height = round(image.width / share), round(image.height / share)
    background, bar = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(2)]
    canvas = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(canvas)
    spare = height - image.height
    top, bottom = round(0.45 * spare), round(0.3 * spare)
    draw.rectangle([0, 0, width, round(0.6 * top)], fill=bar)
    draw.rectangle([0, height - round(0.7 * bottom), width, height], fill=bar)
    unit = max(2, round(0.25 * top))
    for i in range(3):  # window buttons
        x = unit * (1 + 2 * i)
        draw.ellipse([x, unit // 2, x + unit, unit // 2 + unit], fill=((230, 80, 70), (240, 190, 60), (90, 200, 90))[i])
    draw.rectangle([width // 2 - 2 * unit, unit // 2 + unit // 4, width // 2 + 2 * unit, unit], fill=(60, 60, 60))
    for i in range(4):  # toolbar icons
        x = width // 2 + (i - 2) * 3 * unit
        draw.rectangle(
            [x, height - round(0.5 * bottom), x + unit, height - round(0.5 * bottom) + unit], fill=(40, 40, 40)
        )
    left = round((width - image.width) * rng.uniform(0.3, 0.7))
    canvas.paste(image, (left, top))
    return canvas, 90


TRANSFORMS: dict[str, Transform] = {
    "resize": _resize,
    "jpeg": _jpeg,
    "crop": _crop,
    "brightness": _brightness,
    "rotate": _rotate,
    "flip": _flip,
    "border": _border_solid,
    "blurred border": _border_blur,
    "letterbox": _letterbox,
    "frame": _frame,
}


@dataclass(frozen=True)
class Truth:
    """Which photo each file comes from, and which transform made it (None for the photos)."""

    source: dict[str, str]
    transform: dict[str, str | None]

    def files(self, transform: str | None) -> set[str]:
        return {f for f, t in self.transform.items() if t == transform}

    def true_pairs(self, transform: str) -> list[Pair]:
        return [_ordered(self.source[f], f) for f in self.files(transform)]


@dataclass
class Score:
    """Counts behind recall and precision, so that scores can be pooled."""

    found: int
    true: int
    correct: int
    predicted: int

    def __add__(self, other: Score) -> Score:
        return Score(*(a + b for a, b in zip(self.counts, other.counts, strict=True)))

    @property
    def counts(self) -> tuple[int, int, int, int]:
        return self.found, self.true, self.correct, self.predicted

    @property
    def recall(self) -> float:
        return self.found / self.true if self.true else float("nan")

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else float("nan")

    @property
    def f1(self) -> float:
        r, p = self.recall, self.precision
        return 2 * r * p / (r + p) if r + p > 0 else 0.0


def make_photos(source: Path, folder: Path, originals: int, seed: int, side: int | None = None) -> Truth:
    """Copy every photo into ``folder`` and add one transformed copy per original and transform.

    ``side``: every file (photo and copy) is then shrunk to this many px on its longer side."""
    files = sorted(p for p in source.iterdir() if p.is_file())
    rng = np.random.default_rng(seed)
    chosen = {files[i] for i in rng.choice(len(files), size=originals, replace=False)}
    source_of: dict[str, str] = {}
    transform_of: dict[str, str | None] = {}
    for path in files:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        if side is None:
            shutil.copyfile(path, folder / path.name)
        else:
            _shrunk(image, side).save(folder / path.name, format="JPEG", quality=95)
        source_of[path.name], transform_of[path.name] = path.name, None
        if path not in chosen:
            continue
        for name, transform in TRANSFORMS.items():
            copy, quality = transform(image, rng)
            copy_name = f"{path.stem}{SEPARATOR}{name}.jpg"
            (copy if side is None else _shrunk(copy, side)).save(folder / copy_name, format="JPEG", quality=quality)
            source_of[copy_name], transform_of[copy_name] = path.name, name
    return Truth(source_of, transform_of)


def _shrunk(image: Image.Image, side: int) -> Image.Image:
    scale = side / max(image.size)
    return image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS
    )


def ingest(folder: Path, data_dir: Path, model: str) -> tuple[Collection, float, int]:
    """Ingest the folder with the real pipeline: (collection, seconds, files stored)."""
    services = open_services(load_settings(data_dir=data_dir, model=model, device="cpu"))
    items = list(items_from_paths([folder]))
    with timer() as t:
        results = services.ingestor().ingest(items, "bench")
    collection = load_collection(services, "bench")
    services.close()
    return (
        Collection("bench", collection.images, np.array(collection.vectors)),
        t[0],
        sum(r.status == "stored" for r in results),
    )


def prepared(
    source: Path, originals: int, seed: int, model: str, side: int | None, cache: Path | None
) -> tuple[Truth, Collection, float, int, float, tuple[set[Pair], float] | None]:
    """Make the files and ingest them, or read what an earlier run with the same arguments kept in
    ``cache``: (truth, collection, ingest seconds, stored, hashing seconds, imagededup's pairs)."""
    key = f"{model}-{originals}-{seed}-{side or 'full'}-{len(TRANSFORMS)}".replace(":", "_").replace("/", "_")
    saved = cache / f"{key}.pkl" if cache else None
    if saved is not None and saved.exists():
        return pickle.loads(saved.read_bytes())
    with tempfile.TemporaryDirectory(prefix="bench-dupq-") as root:
        folder = Path(root) / "photos"
        folder.mkdir()
        truth = make_photos(source, folder, originals, seed, side)
        collection, t_ingest, stored = ingest(folder, Path(root) / "data", model)
        t_hash = hashing_seconds(folder)
        external = imagededup_pairs(folder)
    result = (truth, collection, t_ingest, stored, t_hash, external)
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_bytes(pickle.dumps(result))
    return result


def hashing_seconds(folder: Path) -> float:
    """What the near level needs beyond the pair search: read, decode and pHash every file (1 thread)."""
    with timer() as t:
        for path in sorted(folder.iterdir()):
            phash_hex(decode(path.read_bytes()).image)
    return t[0]


def imagededup_pairs(folder: Path) -> tuple[set[Pair], float] | None:
    """imagededup's PHash duplicates (same threshold as ours), or None when it is not installed."""
    try:
        from imagededup.methods import PHash
    except ImportError:
        return None
    logging.disable(logging.INFO)  # imagededup logs every step at INFO level
    try:
        with timer() as t:
            found = PHash(verbose=False).find_duplicates(
                image_dir=folder, max_distance_threshold=DEFAULT_NEAR_THRESHOLD
            )
    finally:
        logging.disable(logging.NOTSET)
    return {_ordered(a, b) for a, dups in found.items() for b in dups}, t[0]


def subset(collection: Collection, names: set[str]) -> Collection:
    mask = collection.images["filename"].isin(names).to_numpy()
    return Collection(collection.user, collection.images[mask].reset_index(drop=True), collection.vectors[mask])


def cluster_pairs(collection: Collection, finder: DuplicateFinder) -> tuple[set[Pair], float]:
    """Every pair of filenames sharing a cluster, and the seconds find() took."""
    with timer() as t:
        clusters = finder.find(collection)
    name = dict(zip(collection.images["id"], collection.images["filename"], strict=True))
    pairs = {_ordered(name[a], name[b]) for c in clusters for a, b in combinations(c.members, 2)}
    return pairs, t[0]


def per_transform(collection: Collection, truth: Truth, finder: DuplicateFinder) -> dict[str, set[Pair]]:
    """Predicted pairs on each transform's own collection (all photos + that transform's copies)."""
    photos = truth.files(None)
    return {t: cluster_pairs(subset(collection, photos | truth.files(t)), finder)[0] for t in TRANSFORMS}


def restrict(pairs: set[Pair], truth: Truth) -> dict[str, set[Pair]]:
    """A pair list found on every file at once (imagededup's) split into the per-transform collections."""
    photos = truth.files(None)
    return {t: {p for p in pairs if set(p) <= photos | truth.files(t)} for t in TRANSFORMS}


def score(pairs: set[Pair], truth: Truth, transform: str | None) -> Score:
    """Recall of (photo, copy) pairs and precision, for one transform's copies or (None) for all pairs."""
    names = list(TRANSFORMS) if transform is None else [transform]
    true = [p for name in names for p in truth.true_pairs(name)]
    found = sum(p in pairs for p in true)
    involved = [p for p in pairs if transform is None or transform in (truth.transform[p[0]], truth.transform[p[1]])]
    correct = sum(truth.source[a] == truth.source[b] for a, b in involved)
    return Score(found, len(true), correct, len(involved))


def pooled(runs: dict[str, set[Pair]], truth: Truth) -> Score:
    """All pairs of the per-transform collections together (a transform's true pairs only count in its own)."""
    total = Score(0, 0, 0, 0)
    for transform, pairs in runs.items():
        recall_part = score(pairs, truth, transform)
        precision_part = score(pairs, truth, None)
        total += Score(recall_part.found, recall_part.true, precision_part.correct, precision_part.predicted)
    return total


def _ordered(a: str, b: str) -> Pair:
    return (a, b) if a <= b else (b, a)


def quality_table(runs: dict[str, dict[str, set[Pair]]], truth: Truth, false_pairs: dict[str, int]) -> str:
    """Rows: transforms, the pooled collections and the false pairs among the untouched photos alone."""
    headers = ["copies", *(f"{method} {what}" for method in runs for what in ("recall", "precision (pairs)"))]
    rows: list[list[object]] = []
    for transform in TRANSFORMS:
        row: list[object] = [transform]
        for by_transform in runs.values():
            s = score(by_transform[transform], truth, transform)
            row += [pct(s.recall), f"{pct(s.precision)} ({s.predicted})"]
        rows.append(row)
    row = ["all copies (pooled)"]
    for by_transform in runs.values():
        s = pooled(by_transform, truth)
        row += [pct(s.recall), f"{pct(s.precision)} ({s.predicted})"]
    rows.append(row)
    rows.append(["pairs among the photos alone", *(x for m in runs for x in ("", str(false_pairs[m])))])
    return table(headers, rows)


def together_table(results: dict[str, set[Pair]], truth: Truth) -> str:
    """One collection with every copy: recall per transform, precision over all its pairs."""
    headers = ["copies", *(f"{method} recall" for method in results)]
    rows: list[list[object]] = [[t, *(pct(score(p, truth, t).recall) for p in results.values())] for t in TRANSFORMS]
    overall = [score(p, truth, None) for p in results.values()]
    rows.append(["all copies", *(pct(s.recall) for s in overall)])
    rows.append(["precision (same photo)", *(f"{pct(s.precision)} ({s.predicted})" for s in overall)])
    return table(headers, rows)


def similarity_table(collection: Collection, truth: Truth) -> str:
    """How far each transform moves a photo: cosine of the vectors and pHash bits."""
    row_of = {name: i for i, name in enumerate(collection.images["filename"])}
    hashes = np.array([int(h, 16) for h in collection.images["phash"]], dtype=np.uint64)
    rows = []
    for transform in TRANSFORMS:
        pairs = np.array([(row_of[a], row_of[b]) for a, b in truth.true_pairs(transform)])
        cosine = np.einsum("ij,ij->i", collection.vectors[pairs[:, 0]], collection.vectors[pairs[:, 1]])
        bits = np.bitwise_count(hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]])
        rows.append(
            [
                transform,
                f"{np.median(cosine):.3f}",
                f"{np.percentile(cosine, 10):.3f}",
                f"{cosine.min():.3f}",
                f"{np.median(bits):.0f}",
                f"{np.percentile(bits, 90):.0f}",
                pct(float((bits <= DEFAULT_NEAR_THRESHOLD).mean())),
            ]
        )
    headers = ["copies", "cosine median", "cosine p10", "cosine min", "pHash bits median", "bits p90", "<= 8 bits"]
    return table(headers, rows)


def timing_table(times: dict[str, float], n_files: int, stored: int, t_ingest: float, t_hash: float) -> str:
    rows: list[list[object]] = [
        [f"ingest, whole pipeline ({stored} of {n_files} stored, model on CPU)", f"{t_ingest:.1f} s"],
        ["read + decode + pHash only, 1 thread (the near level's share of ingest)", f"{t_hash:.1f} s"],
    ]
    for label, seconds in times.items():
        if label != "imagededup":
            rows.append(
                [f"DuplicateFinder.find, {label}, {n_files} images (hashes, vectors stored)", f"{seconds:.2f} s"]
            )
    rows.append(["near level end to end: hashing + find", f"{t_hash + times['near']:.1f} s"])
    if "imagededup" in times:
        rows.append(
            ["imagededup PHash().find_duplicates: hashing (2 workers) + search", f"{times['imagededup']:.1f} s"]
        )
    return table(["step", "time"], rows)


def sweep(collection: Collection, truth: Truth, thresholds: Iterable[float]) -> tuple[str, float]:
    """Pooled F1 of the semantic level alone and of all levels per threshold: (table, best semantic).

    The last column counts pairs of different photos (among the untouched ones) at or above the
    threshold: the false pairs the semantic level could make on this data set."""
    photos = subset(collection, truth.files(None)).vectors
    different = (photos @ photos.T)[np.triu_indices(len(photos), 1)]
    rows, best = [], (-1.0, 0.0)
    for threshold in thresholds:
        scores = [
            pooled(
                per_transform(collection, truth, DuplicateFinder(semantic_threshold=threshold, levels=chosen)), truth
            )
            for chosen in (("semantic",), LEVELS)
        ]
        best = max(best, (scores[0].f1, threshold))
        cells = [x for s in scores for x in (pct(s.recall), pct(s.precision), f"{s.f1:.3f}")]
        rows.append([f"{threshold:.2f}", *cells, int((different >= threshold).sum())])
    headers = ["threshold", "semantic R", "semantic P", "semantic F1", "all R", "all P", "all F1", "photo pairs >= t"]
    return table(headers, rows), best[1]


def found_by(clusters: list[Cluster], collection: Collection, truth: Truth) -> dict[Pair, str]:
    """For each true (photo, copy) pair in one cluster: what linked it (the link's test, or
    'through the keeper' when neither is the keeper and they are no duplicates of each other)."""
    name = dict(zip(collection.images["id"], collection.images["filename"], strict=True))
    found = {}
    for cluster in clusters:
        for link in cluster.links:
            pair = _ordered(name[link["a"]], name[link["b"]])
            if truth.source[pair[0]] == truth.source[pair[1]] and None in (truth.transform[p] for p in pair):
                found[pair] = link["via"] or "through the keeper"
    return found


def via_table(found: dict[Pair, str], truth: Truth) -> str:
    """Share of each transform's true pairs found by each test."""
    tests = ["same pixels", "pHash", "pHash inside borders", "cosine", "through the keeper"]
    rows = []
    for transform in TRANSFORMS:
        pairs = truth.true_pairs(transform)
        rows.append([transform, *(pct(sum(found.get(p) == t for p in pairs) / len(pairs)) for t in tests)])
    return table(["copies", *tests], rows)


def default_finder(model: str) -> DuplicateFinder:
    """The finder the Duplicates page and the CLI use (settings' pHash threshold, model default)."""
    return DuplicateFinder(near_threshold=DEFAULT_NEAR_THRESHOLD, semantic_threshold=default_semantic_threshold(model))


def small_table(collection: Collection, truth: Truth, model: str) -> str:
    """Every 32 px copy in one collection, at the defaults and with fixed semantic thresholds."""
    finders = {"defaults (size-aware)": default_finder(model)}
    for threshold in (0.85, 0.90, 0.93, 0.95, 0.97):
        finders[f"semantic >= {threshold:.2f} for all"] = DuplicateFinder(
            semantic_threshold=threshold, size_aware=False
        )
    rows = []
    for label, finder in finders.items():
        pairs, seconds = cluster_pairs(collection, finder)
        s = score(pairs, truth, None)
        false = len(cluster_pairs(subset(collection, truth.files(None)), finder)[0])
        rows.append([label, pct(s.recall), f"{pct(s.precision)} ({s.predicted:,})", false, f"{seconds:.2f} s"])
    return table(["thresholds", "recall", "precision (pairs)", "pairs among the photos alone", "find"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path, nargs="?", default=DEFAULT_PHOTOS)
    parser.add_argument("--originals", type=int, default=200)
    parser.add_argument("--small-originals", type=int, default=100, help="photos with copies in the 32 px case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="VAD_MODEL name, e.g. ViT-B-32:openai where CLIP loads")
    parser.add_argument("--cache", type=Path, default=None, help="keep the ingested collections here for reruns")
    parser.add_argument("--sweep", action="store_true", help="also sweep the semantic threshold (slow)")
    args = parser.parse_args()
    threshold = default_semantic_threshold(args.model)

    truth, collection, t_ingest, stored, t_hash, external = prepared(
        args.photos, args.originals, args.seed, args.model, None, args.cache
    )
    n_files = len(truth.source)
    print(f"{n_files} files: {len(truth.files(None))} photos, {args.originals} of them x {len(TRANSFORMS)} copies")
    finders = {label: replace(default_finder(args.model), levels=levels) for label, levels in LEVEL_SETS.items()}
    runs = {label: per_transform(collection, truth, finder) for label, finder in finders.items()}
    photos_only = subset(collection, truth.files(None))
    false_pairs = {label: len(cluster_pairs(photos_only, finder)[0]) for label, finder in finders.items()}
    together, times = {}, {}
    for label, finder in finders.items():
        together[label], times[label] = cluster_pairs(collection, finder)
    if external is not None:
        runs["imagededup"] = restrict(external[0], truth)
        false_pairs["imagededup"] = sum(set(p) <= truth.files(None) for p in external[0])
        together["imagededup"], times["imagededup"] = external

    print(f"\nnear <= {DEFAULT_NEAR_THRESHOLD} bits, semantic >= {threshold} ({args.model}); one transform at a time\n")
    print(quality_table(runs, truth, false_pairs))
    print("\nevery copy in one collection\n")
    print(together_table(together, truth))
    print("\nwhat linked each (photo, copy) pair, every copy in one collection, all levels\n")
    print(via_table(found_by(default_finder(args.model).find(collection), collection, truth), truth))
    print("\nhow far each transform moves a photo\n")
    print(similarity_table(collection, truth))
    print("\n" + timing_table(times, n_files, stored, t_ingest, t_hash))
    print(f"\npeak RSS after the full-size case: {peak_rss_mb():,.0f} MB")
    if args.sweep:
        sweep_table, best = sweep(collection, truth, SWEEP)
        print(f"\nsemantic threshold sweep ({args.model}, one transform at a time, pooled); best F1 at {best:.2f}\n")
        print(sweep_table)

    small_truth, small, t_small, small_stored, _, _ = prepared(
        args.photos, args.small_originals, args.seed, args.model, SMALL_SIDE, args.cache
    )
    print(
        f"\n{len(small_truth.source)} files of {SMALL_SIDE} px: {len(small_truth.files(None))} photos, "
        f"{args.small_originals} of them x {len(TRANSFORMS)} copies, all in one collection "
        f"(ingest {t_small:.0f} s, {small_stored} stored)\n"
    )
    print(small_table(small, small_truth, args.model))
    print(f"\npeak RSS: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()

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
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from bench.common import peak_rss_mb, timer
from bench.tables import pct, table
from core.collection import Collection, load_collection
from core.duplicates import DEFAULT_NEAR_THRESHOLD, LEVELS, DuplicateFinder, default_semantic_threshold
from core.hashing import phash_hex
from core.images import decode
from core.services import open_services
from core.settings import load_settings
from core.sources import items_from_paths

DEFAULT_MODEL = "efficientnet-lite0"
DEFAULT_PHOTOS = Path("../shared/datasets/imagenet-sample/images")
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


TRANSFORMS: dict[str, Transform] = {
    "resize": _resize,
    "jpeg": _jpeg,
    "crop": _crop,
    "brightness": _brightness,
    "rotate": _rotate,
    "flip": _flip,
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


def make_photos(source: Path, folder: Path, originals: int, seed: int) -> Truth:
    """Copy every photo into ``folder`` and add one transformed copy per original and transform."""
    files = sorted(p for p in source.iterdir() if p.is_file())
    rng = np.random.default_rng(seed)
    chosen = {files[i] for i in rng.choice(len(files), size=originals, replace=False)}
    source_of: dict[str, str] = {}
    transform_of: dict[str, str | None] = {}
    for path in files:
        shutil.copyfile(path, folder / path.name)
        source_of[path.name], transform_of[path.name] = path.name, None
        if path not in chosen:
            continue
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        for name, transform in TRANSFORMS.items():
            copy, quality = transform(image, rng)
            copy_name = f"{path.stem}{SEPARATOR}{name}.jpg"
            copy.save(folder / copy_name, format="JPEG", quality=quality)
            source_of[copy_name], transform_of[copy_name] = path.name, name
    return Truth(source_of, transform_of)


def ingest(folder: Path, data_dir: Path, model: str) -> tuple[Collection, float, int]:
    """Ingest the folder with the real pipeline: (collection, seconds, files stored)."""
    services = open_services(load_settings(data_dir=data_dir, model=model, device="cpu"))
    items = list(items_from_paths([folder]))
    with timer() as t:
        results = services.ingestor().ingest(items, "bench")
    collection = load_collection(services, "bench")
    services.close()
    return collection, t[0], sum(r.status == "stored" for r in results)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path, nargs="?", default=DEFAULT_PHOTOS)
    parser.add_argument("--originals", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="VAD_MODEL name, e.g. ViT-B-32:openai where CLIP loads")
    args = parser.parse_args()
    threshold = default_semantic_threshold(args.model)

    with tempfile.TemporaryDirectory(prefix="bench-dupq-") as root:
        folder = Path(root) / "photos"
        folder.mkdir()
        truth = make_photos(args.photos, folder, args.originals, args.seed)
        n_files = len(truth.source)
        print(f"{n_files} files: {len(truth.files(None))} photos, {args.originals} of them x {len(TRANSFORMS)} copies")
        collection, t_ingest, stored = ingest(folder, Path(root) / "data", args.model)
        t_hash = hashing_seconds(folder)
        external = imagededup_pairs(folder)

    finders = {
        label: DuplicateFinder(semantic_threshold=threshold, levels=levels) for label, levels in LEVEL_SETS.items()
    }
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
    print("\nhow far each transform moves a photo\n")
    print(similarity_table(collection, truth))
    print("\n" + timing_table(times, n_files, stored, t_ingest, t_hash))
    sweep_table, best = sweep(collection, truth, SWEEP)
    print(
        f"\nsemantic threshold sweep ({args.model}, one transform at a time, pooled); best semantic F1 at {best:.2f}\n"
    )
    print(sweep_table)
    print(f"\npeak RSS: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()

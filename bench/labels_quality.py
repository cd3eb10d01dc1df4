"""Dataset QA quality on real photos: leaks planted across a train/test split, labels flipped.

    python -m bench.labels_quality [../shared/datasets/imagenet-sample] [--copies 50] [--flip 0.05]
        [--test-share 0.2] [--seed 0] [--model efficientnet-lite0] [--k 20]
        [--data-dir DIR]

Labels are the coarse groups of ``labels.csv`` (the first, most specific group of each photo;
photos without a group stay unlabelled). Every photo goes to train or test at random
(``--test-share``). Then ``--copies`` distinct train photos per kind get a copy in test:

- exact: the same file recorded again in test (one image in two splits);
- recompressed: JPEG quality 30-70; resized: half size; cropped: 5-20 % off each side.

Everything is ingested once for one user with the real pipeline (EfficientNet-Lite0, CPU), and the
splits and labels are written into the payload as ``core.records`` records them. Finally
``--flip`` of the labelled images get a label from a group the photo is not in.

Leaks: recall per kind is the share of planted (photo, copy) pairs the leak report lists; a
reported pair is false when its two images come from different photos. Mislabels: precision among
the top N by score (N = flips), precision and recall of the flagged images, and AUROC of the score.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from sklearn.metrics import roc_auc_score

from bench.common import timer
from bench.duplicates_quality import SEPARATOR, _crop, _jpeg, _resize
from bench.tables import pct, table
from core.collection import load_collection
from core.duplicates import LEVELS, duplicate_report
from core.leaks import find_leaks
from core.mislabels import DEFAULT_K, detect_mislabels
from core.records import derived
from core.services import Services, open_services
from core.settings import load_settings
from core.sources import items_from_paths

DEFAULT_DATASET = Path("../shared/datasets/imagenet-sample")
USER = "bench"
COPIES = {"recompressed": _jpeg, "resized": _resize, "cropped": _crop}
KINDS = ("exact", *COPIES)


def coarse_labels(dataset: Path) -> tuple[dict[str, str | None], dict[str, set[str]]]:
    """file -> its first (most specific) group or None, and file -> all its groups."""
    label, groups = {}, {}
    with (dataset / "labels.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            names = [g for g in row["groups"].split(";") if g]
            label[row["file"]] = names[0] if names else None
            groups[row["file"]] = set(names)
    return label, groups


def plant(
    dataset: Path, folder: Path, copies: int, test_share: float, rng: np.random.Generator
) -> tuple[dict[str, list[str]], dict[str, str], dict[str, str | None]]:
    """Photos and their copies in ``folder``: (file -> splits, copy -> kind and source, file -> source)."""
    photos = sorted(p for p in (dataset / "images").iterdir() if p.is_file())
    splits = {p.name: ["test" if rng.random() < test_share else "train"] for p in photos}
    train = [p for p in photos if splits[p.name] == ["train"]]
    chosen = rng.choice(len(train), size=copies * len(KINDS), replace=False)
    source: dict[str, str] = {p.name: p.name for p in photos}
    kind: dict[str, str | None] = {p.name: None for p in photos}
    for path in photos:
        shutil.copyfile(path, folder / path.name)
    for number, position in enumerate(chosen):
        path, planted = train[position], KINDS[number // copies]
        if planted == "exact":
            splits[path.name] = ["train", "test"]
            kind[path.name] = "exact"
            continue
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        copy, quality = COPIES[planted](image, rng)
        name = f"{path.stem}{SEPARATOR}{planted}.jpg"
        copy.save(folder / name, format="JPEG", quality=quality)
        splits[name], source[name], kind[name] = ["test"], path.name, planted
    return splits, source, kind


def record_fields(services: Services, ids: dict[str, str], splits: dict[str, list[str]], labels: dict) -> None:
    """Write occurrences (one per split), datasets, splits and label as core.records does."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for name, image_id in ids.items():
        occurrences = [
            {"name": name, "path": name, "dataset": "default", "split": s, "label": labels[name], "added_at": now}
            for s in splits[name]
        ]
        services.index.set_payload(USER, [image_id], derived(occurrences, labels[name]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--copies", type=int, default=50, help="planted leaks per kind")
    parser.add_argument("--flip", type=float, default=0.05, help="share of labelled images given a wrong label")
    parser.add_argument("--test-share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="labelled neighbours that vote")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the ingested images here; a later run with the same "
        "options reuses them (default: a temporary folder)",
    )
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    label_of, groups_of = coarse_labels(args.dataset)
    every_group = sorted({g for groups in groups_of.values() for g in groups})

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        splits, source, kind = plant(args.dataset, folder, args.copies, args.test_share, rng)
        data_dir = args.data_dir or Path(tmp) / "data"
        services = open_services(load_settings(data_dir=data_dir, model=args.model, device="cpu"))
        try:
            with timer() as ingest_time:
                if not services.index.count(USER):
                    services.ingestor().ingest(list(items_from_paths([folder])), USER)
            stored = load_collection(services, USER).images
            ids = dict(zip(stored["filename"], stored["id"], strict=True))
            labels = {name: label_of.get(source[name]) for name in ids}
            labelled = sorted(n for n in ids if labels[n])
            flipped = set(rng.choice(labelled, size=round(args.flip * len(labelled)), replace=False))
            for name in sorted(flipped):
                wrong = [g for g in every_group if g not in groups_of[source[name]]]
                labels[name] = str(rng.choice(wrong))
            record_fields(services, ids, splits, labels)
            collection = load_collection(services, USER)
            with timer() as leak_time:
                clusters = duplicate_report(services, USER, LEVELS, collection=collection)
                report = find_leaks(collection, clusters)
            with timer() as mislabel_time:
                mislabels = detect_mislabels(collection, args.k)
        finally:
            services.close()

    name_of = {image_id: name for name, image_id in ids.items()}
    print(
        f"{len(ids)} images ({len(labelled)} labelled, {len(flipped)} flipped), ingest {ingest_time[0]:.0f} s; "
        f"leak report {leak_time[0]:.1f} s, mislabels {mislabel_time[0]:.2f} s; model {args.model}\n"
    )
    print(leak_table(report.pairs, name_of, source, kind, args.copies))
    print()
    print(mislabel_table(mislabels.frame, {ids[n]: label_of[source[n]] for n in flipped}))
    for note in mislabels.notes:
        print(f"\nnote: {note}")


def leak_table(pairs, name_of: dict[str, str], source: dict[str, str], kind: dict[str, str | None], copies: int) -> str:
    """Recall per planted kind (and the level it was found at); false pairs per level."""
    found: dict[frozenset, str] = {}
    false = Counter()
    for pair in pairs.itertuples():
        a, b = name_of[pair.a_id], name_of[pair.b_id]
        if source[a] != source[b]:
            false[pair.level] += 1
        found[frozenset((a, b))] = pair.level
    rows = []
    for planted in KINDS:
        names = [n for n, k in kind.items() if k == planted]
        levels = Counter(found.get(frozenset((source[n], n))) for n in names)
        hit = sum(v for level, v in levels.items() if level)
        by_level = ", ".join(f"{level} {levels[level]}" for level in LEVELS if levels[level])
        rows.append([planted, f"{hit} / {copies}", pct(hit / copies), by_level or "-"])
    total = sum(1 for k in kind.values() if k)
    hits = sum(int(r[1].split(" / ")[0]) for r in rows)
    rows.append(["all", f"{hits} / {total}", pct(hits / total), ""])
    recall = table(["planted leak", "found", "recall", "found at level"], rows)
    per_level = []
    for level in LEVELS:
        predicted = int((pairs["level"] == level).sum())
        correct = predicted - false[level]
        per_level.append(
            [level, predicted, correct, false[level], pct(correct / predicted if predicted else float("nan"))]
        )
    return (
        recall + "\n\n" + table(["level", "pairs reported", "true", "false (distinct photos)", "precision"], per_level)
    )


def mislabel_table(frame, original: dict[str, str]) -> str:
    """``original``: the flipped images' ids and their right labels."""
    flipped = set(original)
    truth = frame["id"].isin(flipped).to_numpy()
    scores = frame["mislabel_score"].to_numpy()
    top = frame.head(len(flipped))  # the frame is sorted by score
    flagged = frame["is_mislabel_issue"].to_numpy()
    rows_flipped = frame[truth]
    suggested_back = (rows_flipped["suggested_label"] == rows_flipped["id"].map(original)).to_numpy()
    rows = [
        ["labelled images", f"{len(frame):,}"],
        ["flipped labels", f"{len(flipped):,}"],
        [f"precision at {len(flipped)} (top by score)", pct(top["id"].isin(flipped).mean())],
        ["AUROC of the score", f"{roc_auc_score(truth, scores):.3f}"],
        ["flagged images", f"{int(flagged.sum()):,}"],
        ["precision of the flags", pct(truth[flagged].mean() if flagged.any() else float("nan"))],
        ["recall of the flags", pct(flagged[truth].mean())],
        ["flipped images whose suggestion is the original label", pct(suggested_back.mean())],
    ]
    return table(["mislabels", "figure"], rows)


if __name__ == "__main__":
    main()

"""Quality flags on real photos: how many good photos each check flags, and its recall on made-to-be-bad copies.

    python -m bench.quality_flags [../shared/datasets/imagenet-sample] [--per-variant 100] [--seed 0] [--list N]
        [--thumbnails]

Every photo of labels.csv goes through the ingest decode (``core.images.decode``: the ~256 px
working copy) and ``core.quality.image_stats``; the checks then run on the whole set at once, as
the Anomalies page runs them on a collection. For each made-to-be-bad kind, ``--per-variant``
photos (a fixed draw per kind) are altered at full size, saved as JPEG (quality 90) and go
through the same path:

- dark: pixel values scaled to 10-15 %;
- bright: pixel values pulled to within 5-15 % of white (a washed-out, overexposed copy);
- blurry: Gaussian blur of radius 4-6 px on the full-size photo;
- low_information: half a flat graphic of 2-3 tones (the photo at the working size, smoothed
  with a Gaussian of radius 8 px and posterised; reducing a full-size posterised photo would
  blend its tones again), half one colour (the photo's mean) with grain
  of 1-3 grey levels;
- grayscale: converted to grey and back to RGB.

"lowest unflagged score" is the good photo closest to being flagged and "highest copy score" the
made-to-be-bad copy closest to passing (the threshold lies between them); "also flags" counts
the copies made bad in another way that this check flags too. Nothing is written to disk.
``--list N`` prints the N lowest-scoring originals per check (to look at the borderline
photos). ``--thumbnails`` measures every image on its WebP thumbnail (longest side 256 px)
instead, as ``core.collection`` does for payloads stored without stats.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter, ImageOps

from bench.common import timer
from bench.tables import pct, table
from core.images import WORKING_SIDE, decode, open_rgb, thumbnail_bytes
from core.quality import CHECKS, image_stats, run_checks, stats_frame

DEFAULT_DATASET = Path("../shared/datasets/imagenet-sample")
Variant = Callable[[Image.Image, np.random.Generator], Image.Image]


def _scaled(image: Image.Image, factor: float, towards: int) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    return Image.fromarray((towards + (pixels - towards) * factor).round().astype(np.uint8), "RGB")


def dark(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return _scaled(image, rng.uniform(0.10, 0.15), towards=0)


def bright(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return _scaled(image, rng.uniform(0.05, 0.15), towards=255)


def blurry(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(4.0, 6.0)))


def low_information(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    if rng.random() < 0.5:
        tones = int(rng.integers(2, 4))
        scale = min(1.0, WORKING_SIDE / min(image.size))
        small = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
        smooth = small.filter(ImageFilter.GaussianBlur(8))
        return smooth.quantize(colors=tones, method=Image.Quantize.MEDIANCUT).convert("RGB")
    mean = np.asarray(image, dtype=np.float32).reshape(-1, 3).mean(axis=0)
    grain = rng.normal(0.0, rng.uniform(1.0, 3.0), (image.height, image.width, 1))
    return Image.fromarray(np.clip(mean + grain, 0, 255).round().astype(np.uint8), "RGB")


def grayscale(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image.convert("L").convert("RGB")


VARIANTS: dict[str, Variant] = {
    "dark": dark,
    "bright": bright,
    "blurry": blurry,
    "low_information": low_information,
    "grayscale": grayscale,
}


def read_files(dataset: Path) -> list[str]:
    with (dataset / "labels.csv").open(newline="") as handle:
        return [row["file"] for row in csv.DictReader(handle)]


def measure(image_id: str, data: bytes, thumbnails: bool = False) -> dict[str, object]:
    """What ingest stores and load_collection gives the checks: size and quality stats, measured on
    the working copy (ingest) or on the WebP thumbnail (core.collection's backfill of older payloads)."""
    decoded = decode(data)
    measured = open_rgb(thumbnail_bytes(decoded)) if thumbnails else decoded.image
    return {"id": image_id, "width": decoded.width, "height": decoded.height, "quality": image_stats(measured)}


def jpeg_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def build_rows(dataset: Path, files: list[str], per_variant: int, seed: int, thumbnails: bool = False) -> pd.DataFrame:
    """One row per original and per made-to-be-bad copy; ``kind`` is ``original`` or the variant."""
    rows = [measure(f, (dataset / "images" / f).read_bytes(), thumbnails) | {"kind": "original"} for f in files]
    for number, (kind, make) in enumerate(VARIANTS.items()):
        rng = np.random.default_rng([seed, number])
        for file in rng.choice(files, size=min(per_variant, len(files)), replace=False):
            with Image.open(dataset / "images" / file) as source:
                altered = make(ImageOps.exif_transpose(source).convert("RGB"), rng)
            rows.append(measure(f"{kind}:{file}", jpeg_bytes(altered), thumbnails) | {"kind": kind})
    frame = pd.DataFrame(rows)
    return pd.concat([frame, stats_frame(frame["quality"])], axis=1)


def flag_rates(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The originals and the checks' columns for them, run on the originals alone (a collection of
    good photos)."""
    originals = frame[frame["kind"] == "original"].reset_index(drop=True)
    return originals, run_checks(originals)


def variant_flags(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Every check's flags on the ``kind`` copies, in a collection of the originals plus those copies
    (so a size-relative check sees the same median as on the originals)."""
    collection = frame[frame["kind"].isin(["original", kind])].reset_index(drop=True)
    return run_checks(collection)[(collection["kind"] == kind).to_numpy()]


def cross_flags(per_kind: dict[str, pd.DataFrame], name: str) -> str:
    """How many copies made bad in another way this check also flags, e.g. ``dark 12``."""
    counts = {kind: int(flags[f"is_{name}_issue"].sum()) for kind, flags in per_kind.items() if kind != name}
    return ", ".join(f"{kind} {count}" for kind, count in counts.items() if count) or "none"


def report(frame: pd.DataFrame, list_lowest: int) -> str:
    originals, checks = flag_rates(frame)
    per_kind = {kind: variant_flags(frame, kind) for kind in VARIANTS}
    rows = []
    for name, check in CHECKS.items():
        flagged = checks[f"is_{name}_issue"]
        own = per_kind[name][f"is_{name}_issue"] if name in per_kind else pd.Series(dtype=bool)
        passed = checks.loc[~flagged, f"{name}_score"]
        closest_copy = per_kind[name][f"{name}_score"].max() if name in per_kind else float("nan")
        rows.append(
            [
                check.label,
                f"{int(flagged.sum())} / {len(flagged)}",
                pct(float(flagged.mean())),
                f"{passed.min():.3f}" if len(passed) else "n/a",
                f"{int(own.sum())} / {len(own)}" if len(own) else "-",
                pct(float(own.mean())) if len(own) else "n/a",
                "n/a" if closest_copy != closest_copy else f"{closest_copy:.3f}",
                cross_flags(per_kind, name),
                check.description,
            ]
        )
    headers = [
        "check",
        "originals flagged",
        "share",
        "lowest unflagged score",
        "made-to-be-bad flagged",
        "recall",
        "highest copy score",
        "also flags",
        "rule",
    ]
    lines = [table(headers, rows)]
    for name in CHECKS if list_lowest else []:
        lowest = checks[f"{name}_score"].nsmallest(list_lowest)
        listed = ", ".join(f"{originals.loc[i, 'id']} {s:.3f}" for i, s in lowest.items())
        lines.append(f"\nlowest {name}_score (threshold {CHECKS[name].threshold}): {listed}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, nargs="?", default=DEFAULT_DATASET)
    parser.add_argument("--per-variant", type=int, default=100, help="made-to-be-bad copies per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", type=int, default=0, metavar="N", help="print the N lowest originals per check")
    parser.add_argument(
        "--thumbnails", action="store_true", help="measure on the thumbnails, as the backfill of older payloads does"
    )
    args = parser.parse_args()
    if not (args.dataset / "labels.csv").is_file():
        parser.error(f"no labels.csv in {args.dataset}: give the folder of the shared photos")

    files = read_files(args.dataset)
    with timer() as t:
        frame = build_rows(args.dataset, files, args.per_variant, args.seed, args.thumbnails)
    where = "thumbnails" if args.thumbnails else "working copies"
    print(
        f"{len(files)} photos and {len(frame) - len(files)} made-to-be-bad copies measured ({where}) in {t[0]:.0f} s\n"
    )
    print(report(frame, args.list))


if __name__ == "__main__":
    main()

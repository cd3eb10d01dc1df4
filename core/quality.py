"""Image-quality checks in the style of cleanvision: small registered checks over per-image stats.

Stats are measured once, at ingest, on the reduced working copy and kept in the payload; each
check turns them into ``<check>_score`` in [0, 1] (lower = worse) and ``is_<check>_issue``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter


def image_stats(image: Image.Image) -> dict[str, float]:
    """Brightness, contrast, sharpness, entropy and colourfulness of an RGB image; all finite, for
    any size from 1x1 up."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    gray_image = image.convert("L")
    gray = np.asarray(gray_image, dtype=np.float32) / 255.0
    edges = gray_image.filter(ImageFilter.Kernel((3, 3), [0, 1, 0, 1, -4, 1, 0, 1, 0], 1, 128))
    laplacian = np.asarray(edges, dtype=np.float32)[1:-1, 1:-1] - 128.0  # Pillow leaves the border unfiltered
    # An image under 3 px on a side has no interior for the 3x3 kernel: no measurable detail.
    sharpness = float(laplacian.var()) if laplacian.size else 0.0
    histogram = np.bincount(np.asarray(gray_image).ravel(), minlength=256).astype(np.float64)
    probabilities = histogram[histogram > 0] / histogram.sum()
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return {
        "brightness": float(gray.mean()),
        "contrast": float(gray.std()),
        "sharpness": sharpness,
        "entropy": float(-(probabilities * np.log2(probabilities)).sum()) + 0.0,  # + 0.0: no -0.0
        "colorfulness": float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())),
    }


class QualityCheck(ABC):
    """One check: a score in [0, 1] per image (lower = worse) and a flag below ``threshold``."""

    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    threshold: ClassVar[float] = 0.5

    @abstractmethod
    def score(self, images: pd.DataFrame) -> pd.Series:
        """Scores for the rows of ``images`` (payload columns plus ``q_*`` stats)."""


CHECKS: dict[str, QualityCheck] = {}


def register(cls: type[QualityCheck]) -> type[QualityCheck]:
    CHECKS[cls.name] = cls()
    return cls


def _clip(values: pd.Series | np.ndarray) -> pd.Series:
    return pd.Series(np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0))


@register
class Dark(QualityCheck):
    name, label = "dark", "Too dark"
    description = "mean brightness under 20 %"

    def score(self, images: pd.DataFrame) -> pd.Series:
        return _clip(images["q_brightness"] / 0.4)


@register
class Bright(QualityCheck):
    name, label = "bright", "Too bright"
    description = "mean brightness over 80 %"

    def score(self, images: pd.DataFrame) -> pd.Series:
        return _clip((1.0 - images["q_brightness"]) / 0.4)


@register
class Blurry(QualityCheck):
    name, label = "blurry", "Blurry"
    description = "little fine detail (low variance of the Laplacian)"

    def score(self, images: pd.DataFrame) -> pd.Series:
        # Laplacian variance on the ~256 px working copy (0-255 scale): sharp photos give
        # hundreds; under about 30 the image looks soft.
        return _clip(np.log10(1.0 + images["q_sharpness"].to_numpy()) / 3.0)


@register
class LowInformation(QualityCheck):
    name, label = "low_information", "Low information"
    description = "few distinct tones (grey-level entropy under 3.6 bits)"

    def score(self, images: pd.DataFrame) -> pd.Series:
        return _clip(images["q_entropy"] / 7.2)


@register
class Grayscale(QualityCheck):
    name, label = "grayscale", "Grayscale"
    description = "no colour at all"
    threshold = 0.1

    def score(self, images: pd.DataFrame) -> pd.Series:
        return _clip(images["q_colorfulness"] / 0.2)


@register
class OddAspectRatio(QualityCheck):
    name, label = "odd_aspect_ratio", "Odd aspect ratio"
    description = "one side more than 2.5 times the other"

    def score(self, images: pd.DataFrame) -> pd.Series:
        sides = images[["width", "height"]].to_numpy(dtype=np.float64)
        ratio = sides.max(axis=1) / np.maximum(sides.min(axis=1), 1.0)
        return _clip((4.0 - ratio) / 3.0)


@register
class OddSize(QualityCheck):
    name, label = "odd_size", "Odd size"
    description = "8 times smaller or larger than the collection's median, or a side under 32 px"

    def score(self, images: pd.DataFrame) -> pd.Series:
        pixels = (images["width"] * images["height"]).to_numpy(dtype=np.float64)
        median = float(np.median(pixels)) if len(pixels) else 1.0
        ratio = np.maximum(pixels, 1.0) / max(median, 1.0)
        score = 1.0 - np.abs(np.log10(ratio)) / np.log10(64.0)
        tiny = images[["width", "height"]].min(axis=1).to_numpy() < 32
        return _clip(np.where(tiny, 0.0, score))


STAT_COLUMNS = ["q_brightness", "q_contrast", "q_sharpness", "q_entropy", "q_colorfulness"]


def stats_frame(payloads: pd.Series) -> pd.DataFrame:
    """The ``quality`` payload dicts as ``q_*`` columns (NaN where an image has none)."""
    rows = [p if isinstance(p, dict) else {} for p in payloads]
    frame = pd.DataFrame(rows, index=payloads.index)
    return frame.reindex(columns=[c[2:] for c in STAT_COLUMNS]).add_prefix("q_")


def run_checks(images: pd.DataFrame, checks: list[str] | None = None) -> pd.DataFrame:
    """``<check>_score`` and ``is_<check>_issue`` columns for every check (or the named ones)."""
    out = pd.DataFrame(index=images.index)
    for name in checks or list(CHECKS):
        check = CHECKS[name]
        score = check.score(images).set_axis(images.index)
        out[f"{name}_score"] = score.round(4)
        out[f"is_{name}_issue"] = score.notna() & (score < check.threshold)
    return out

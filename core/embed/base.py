"""The Embedder interface every model backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from core.embed.transform import ImageTransform


class TextSearchUnavailable(RuntimeError):
    """The model has no text encoder; the message says how to get one."""


class ModelLoadError(RuntimeError):
    """The configured model could not be loaded; the message says why and what to do."""


class Embedder(ABC):
    """Turns images (and, for CLIP models, text) into L2-normalised float32 vectors."""

    #: Stable model id; it names the vector collection (e.g. ``ViT-B-32:openai``).
    name: str
    dimension: int
    supports_text: bool = False
    #: Random weights: fine for tests and timing, meaningless for users.
    random_weights: bool = False
    #: A message for users about how the model was chosen (e.g. a fallback), or None.
    notice: str | None = None
    device: str = "cpu"
    #: Arithmetic of the forward pass: fp32, or fp16/bf16 autocast.
    precision: str = "fp32"

    @abstractmethod
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Vectors of shape (len(images), dimension), unit length, float32."""

    def image_transform(self) -> ImageTransform | None:
        """The model's preprocessing as a picklable transform for worker processes, or None when
        this model cannot split it (then ingest sends working images to ``embed_images``)."""
        return None

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Vectors for a stack of ``image_transform().pixels`` outputs, shape (N, H, W, 3) uint8."""
        raise NotImplementedError(f"{self.name} takes images only; use embed_images")

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for text queries in the image space; raises TextSearchUnavailable."""
        raise TextSearchUnavailable(
            f"{self.name} has no text encoder, so text search is off. Use a CLIP model: it downloads "
            "on first run with network access (VAD_MODEL=ViT-B-32:openai), or point VAD_MODEL_WEIGHTS "
            "to a local open_clip weights file."
        )

    def describe(self) -> str:
        text = "text + image" if self.supports_text else "image only"
        extra = ", RANDOM WEIGHTS (tests/timing only)" if self.random_weights else ""
        device = self.device if self.precision == "fp32" else f"{self.device} {self.precision}"
        return f"{self.name} ({self.dimension}-d, {text}, {device}{extra})"


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation to float32 (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)

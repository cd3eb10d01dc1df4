"""Embedding models behind one interface, chosen by name (``VAD_MODEL``) and loaded once per process.

Names:
- ``auto`` (default): CLIP ``ViT-B-32:openai`` if its weights load, else EfficientNet-Lite0 with a notice;
- any open_clip ``arch:tag`` (``ViT-B-32:openai``, ``ViT-B-16:laion2b_s34b_b88k``...), optionally with
  ``VAD_MODEL_WEIGHTS`` pointing to a local weights file for that model;
- ``efficientnet-lite0``: offline ImageNet features, image only;
- ``arch:random`` and ``tiny:random``: random weights, for tests and timing only.
"""

from __future__ import annotations

import functools
from pathlib import Path

from core.embed.base import Embedder, ModelLoadError, TextSearchUnavailable, normalise

__all__ = [
    "Embedder",
    "ModelLoadError",
    "TextSearchUnavailable",
    "default_batch_size",
    "load_embedder",
    "normalise",
    "resolve_device",
]

#: Images per forward pass when ``VAD_BATCH_SIZE`` is unset: a GPU needs large batches to be busy.
CPU_BATCH_SIZE = 32
GPU_BATCH_SIZE = 256


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_batch_size(device: str) -> int:
    """Images per forward pass for ``device`` (an accelerator gets large batches)."""
    return CPU_BATCH_SIZE if device == "cpu" else GPU_BATCH_SIZE


@functools.lru_cache(maxsize=4)
def load_embedder(
    spec: str = "auto", weights: Path | None = None, device: str = "auto", precision: str = "auto"
) -> Embedder:
    """The embedder for ``spec``; cached, so each model is loaded once per process. ``precision``
    (auto, fp32, fp16, bf16) sets the forward pass's arithmetic; auto is fp16 on CUDA."""
    from core.embed.efficientnet import NAME as EFFICIENTNET
    from core.embed.efficientnet import EfficientNetLite0Embedder
    from core.embed.openclip import DEFAULT_CLIP, OpenClipEmbedder

    device = resolve_device(device)
    spec = spec.strip()
    if spec.lower() == EFFICIENTNET:
        return EfficientNetLite0Embedder(device=device, precision=precision)
    if spec.lower() == "auto":
        arch, tag = DEFAULT_CLIP.split(":")
        try:
            return OpenClipEmbedder(arch, tag, weights=weights, device=device, precision=precision)
        except ModelLoadError as exc:
            embedder = EfficientNetLite0Embedder(device=device, precision=precision)
            embedder.notice = (
                f"CLIP is not available: {exc} Using EfficientNet-Lite0 instead: image search, "
                "duplicates and anomalies work, text search does not."
            )
            return embedder
    arch, _, tag = spec.partition(":")
    if not tag:
        import open_clip

        tags = open_clip.list_pretrained_tags_by_model(arch)
        tag = "openai" if "openai" in tags else (tags[0] if tags else "")
        if not tag and weights is None:
            raise ModelLoadError(f"VAD_MODEL={spec!r}: name a model as arch:tag, e.g. ViT-B-32:openai")
    return OpenClipEmbedder(arch, tag or "local", weights=weights, device=device, precision=precision)

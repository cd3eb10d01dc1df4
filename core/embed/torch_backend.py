"""What the PyTorch backends share: device, precision, pinned copies and batched forward passes."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from core.embed.base import Embedder, normalise
from core.embed.transform import ImageTransform, split_transform
from core.images import model_input

#: ``VAD_PRECISION`` values; ``auto`` is fp16 on CUDA and fp32 elsewhere.
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` becomes fp16 on CUDA (tensor cores) and fp32 on a CPU, where half precision is slow."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    return "fp16" if device.startswith("cuda") else "fp32"


class TorchEmbedder(Embedder):
    """An image model in PyTorch: ``embed_pixels`` takes the ready uint8 inputs made by
    ``image_transform().pixels`` (in worker processes), ``embed_images`` does it all here."""

    model: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]

    def __init__(self, device: str, precision: str = "auto") -> None:
        self.device = device
        self.precision = resolve_precision(precision, device)

    def _set_preprocess(self, preprocess: Callable[[Image.Image], torch.Tensor]) -> None:
        self.preprocess = preprocess
        self._transform = split_transform(preprocess)

    def image_transform(self) -> ImageTransform | None:
        return self._transform

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self._transform is None:
            return self._embed(torch.stack([self.preprocess(model_input(image)) for image in images]).to(self.device))
        return self.embed_pixels(np.stack([self._transform.pixels(image) for image in images]))

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        if self._transform is None:
            raise NotImplementedError(f"{self.name} has no separable preprocessing; use embed_images")
        if len(pixels) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._embed(self._transform.to_batch(self._to_device(torch.from_numpy(pixels))))

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        """On CUDA: a pinned copy (from PyTorch's caching host allocator) sent without blocking."""
        if not self.device.startswith("cuda"):
            return batch
        return batch.pin_memory().to(self.device, non_blocking=True)

    @torch.inference_mode()
    def _embed(self, batch: torch.Tensor) -> np.ndarray:
        with self.autocast():
            features = self._encode(batch)
        return normalise(features.float().cpu().numpy())

    def autocast(self) -> torch.autocast:
        """Mixed precision for the forward pass (disabled for fp32)."""
        device_type = self.device.split(":", 1)[0]
        dtype = _DTYPES.get(self.precision)
        return torch.autocast(device_type=device_type, dtype=dtype, enabled=dtype is not None)

    @abstractmethod
    def _encode(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) features of a preprocessed float batch on the device."""

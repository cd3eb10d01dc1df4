"""A model's image preprocessing, split between worker processes and the model's device.

torchvision pipelines end in ``ToTensor`` + ``Normalize``. Everything before them works on PIL
images (resize, crop, mode) and is CPU work that a worker process can do; it yields a small
uint8 array (224x224x3: 150 KB, a quarter of the float tensor) that travels cheaply between
processes. The float conversion and normalisation then run on the model's device, on whole
batches. The result equals running the full pipeline on one image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from core.images import model_input


@dataclass(frozen=True)
class ImageTransform:
    """Picklable: ``pixels`` runs anywhere (a worker process); ``to_batch`` on the model's device."""

    pil_steps: Callable[[Image.Image], Image.Image]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def pixels(self, image: Image.Image) -> np.ndarray:
        """The model's input for one working image, as an (H, W, 3) uint8 array.

        The image is first bounded (``model_input``: extreme aspect ratios letterboxed, long sides
        capped), so the model's resize can never blow a 1 x 65535 strip up to gigabytes.
        """
        return np.asarray(self.pil_steps(model_input(image)).convert("RGB"), dtype=np.uint8)

    def to_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8, already on the device -> (N, 3, H, W) normalised float32."""
        batch = pixels.permute(0, 3, 1, 2).float().div(255)
        mean = torch.tensor(self.mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
        return batch.sub(mean).div(std)


def split_transform(pipeline: Callable[[Image.Image], torch.Tensor]) -> ImageTransform | None:
    """Split a torchvision ``Compose`` that ends in ToTensor + Normalize; None for any other shape."""
    steps = list(getattr(pipeline, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-2], transforms.ToTensor):
        return None
    normalize = steps[-1]
    if not isinstance(normalize, transforms.Normalize) or normalize.inplace:
        return None
    mean, std = (tuple(float(v) for v in values) for values in (normalize.mean, normalize.std))
    return ImageTransform(transforms.Compose(steps[:-2]), mean, std)

"""A model's image preprocessing, split between worker processes and the model's device.

torchvision pipelines end in ``ToTensor`` + ``Normalize``. Everything before them (resize, crop,
mode) is CPU work that a worker process can do; it yields a small uint8 array (224x224x3: 150 KB,
a quarter of the float tensor) that travels cheaply between processes. The float conversion and
normalisation then run on the model's device, on whole batches.

A resize that shrinks, and the crop, run on a uint8 tensor (``core.tensor_images``): CLIP's input
from a working copy then costs 0.49 ms instead of 1.30 ms on one core, within two grey levels of
Pillow's pixels. Enlarging (small images) stays with Pillow, as do all other steps: there the
kernels' rounding moved a convolutional model's vectors (cosine 0.998) for no time worth having.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms.v2 import functional as tensor_ops

from core.images import model_input
from core.tensor_images import MATCHING_RESAMPLINGS, as_array, as_image, as_tensor, size_of

Step = Callable[[Image.Image], Image.Image] | Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ImageTransform:
    """Picklable: ``pixels`` runs anywhere (a worker process); ``to_batch`` on the model's device."""

    steps: Sequence[Step]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def pixels(self, image: Image.Image) -> np.ndarray:
        """The model's input for one working image, as an (H, W, 3) uint8 array.

        The image is first bounded (``model_input``: extreme aspect ratios letterboxed, long sides
        capped), so the model's resize can never blow a 1 x 65535 strip up to gigabytes.
        """
        current: Image.Image | torch.Tensor = model_input(image)
        for step in self.steps:
            if runs_on_tensors(step, size_of(current)):
                current = _on_tensor(step, as_tensor(current))
            else:
                current = step(as_image(current))
        if isinstance(current, torch.Tensor):
            return as_array(current)
        return np.asarray(current.convert("RGB"), dtype=np.uint8)

    def to_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8, already on the device -> (N, 3, H, W) normalised float32."""
        batch = pixels.permute(0, 3, 1, 2).float().div(255)
        mean = torch.tensor(self.mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
        return batch.sub(mean).div(std)


def runs_on_tensors(step: Step, size: tuple[int, int]) -> bool:
    """Whether ``step`` runs on a uint8 tensor for an image of ``size`` (width, height): a centre
    crop, or an antialiased bilinear or bicubic resize that shrinks the image."""
    if isinstance(step, transforms.CenterCrop):
        return True
    if not isinstance(step, transforms.Resize) or step.interpolation not in MATCHING_RESAMPLINGS:
        return False
    if step.antialias is False:
        return False
    width, height = size
    target = [step.size] if isinstance(step.size, int) else list(step.size)
    if len(target) == 1:  # the shorter side, to this length
        return target[0] <= min(width, height)
    return target[0] <= height and target[1] <= width


def _on_tensor(step: transforms.Resize | transforms.CenterCrop, image: torch.Tensor) -> torch.Tensor:
    """``step`` on a (3, H, W) uint8 tensor, through torchvision's v2 kernels: unlike the v1
    transforms (which resize a float copy), they resize uint8 directly."""
    if isinstance(step, transforms.CenterCrop):
        return tensor_ops.center_crop(image, list(step.size))
    return tensor_ops.resize(image, step.size, step.interpolation, step.max_size, antialias=True)


def split_transform(pipeline: Callable[[Image.Image], torch.Tensor]) -> ImageTransform | None:
    """Split a torchvision ``Compose`` that ends in ToTensor + Normalize; None for any other shape."""
    steps = list(getattr(pipeline, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-2], transforms.ToTensor):
        return None
    normalize = steps[-1]
    if not isinstance(normalize, transforms.Normalize) or normalize.inplace:
        return None
    mean, std = (tuple(float(v) for v in values) for values in (normalize.mean, normalize.std))
    return ImageTransform(tuple(steps[:-2]), mean, std)

"""Shrinking RGB images as uint8 tensors, through torchvision's v2 kernels.

Their antialiased bilinear and bicubic kernels for uint8 give the pixels Pillow gives to within two
grey levels (rounding, mostly by one, either way), in a third to a fifth of its time: Pillow's
resampling has no SIMD path, torch's has. For pixels where that rounding does not matter (the
model's input, a thumbnail), never for the working copy, whose exact pixels define the pixel hash
that older records hold.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tensor_ops

#: Resamplings whose uint8 tensor kernels match Pillow's.
MATCHING_RESAMPLINGS = (InterpolationMode.BILINEAR, InterpolationMode.BICUBIC)


def as_tensor(image: Image.Image | torch.Tensor) -> torch.Tensor:
    """An image as a (3, H, W) uint8 tensor (a tensor as it is)."""
    if isinstance(image, torch.Tensor):
        return image
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)  # a writable copy


def as_array(image: torch.Tensor) -> np.ndarray:
    """A (3, H, W) uint8 tensor as an (H, W, 3) array."""
    return np.ascontiguousarray(image.permute(1, 2, 0).numpy())


def as_image(image: Image.Image | torch.Tensor) -> Image.Image:
    """A (3, H, W) uint8 tensor as an RGB Pillow image (an image as it is)."""
    return image if isinstance(image, Image.Image) else Image.fromarray(as_array(image), "RGB")


def size_of(image: Image.Image | torch.Tensor) -> tuple[int, int]:
    """(width, height) of a Pillow image or of a (3, H, W) tensor."""
    return image.size if isinstance(image, Image.Image) else (image.shape[2], image.shape[1])


def shrink(image: Image.Image, size: tuple[int, int], resample: InterpolationMode) -> Image.Image:
    """``image`` reduced to ``size`` (width, height), antialiased as Pillow does. For shrinking:
    enlarged, the two libraries' pixels differ more (see ``core.embed.transform``)."""
    if size == image.size:
        return image
    width, height = size
    return as_image(tensor_ops.resize(as_tensor(image), [height, width], resample, antialias=True))

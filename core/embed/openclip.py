"""OpenCLIP backends: pretrained CLIP (image + text), and randomly initialised models for tests."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import open_clip
import torch

from core.embed.base import ModelLoadError, normalise
from core.embed.torch_backend import TorchEmbedder

DEFAULT_CLIP = "ViT-B-32:openai"
#: A very small CLIP (same code path as ViT-B-32) for fast tests; random weights only.
TINY_ARCH = "tiny"
_TINY_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
_RANDOM_SEED = 1234


class OpenClipEmbedder(TorchEmbedder):
    """Any open_clip ``arch:tag`` (or a local weights file), with its image and text towers."""

    supports_text = True

    def __init__(
        self, arch: str, tag: str, weights: Path | None = None, device: str = "cpu", precision: str = "auto"
    ) -> None:
        super().__init__(device, precision)
        self.name = f"{arch}:{tag}"
        self.random_weights = tag == "random"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_RANDOM_SEED)  # random weights must be the same in every process
            if arch == TINY_ARCH:
                if not self.random_weights:
                    raise ModelLoadError("the tiny test model exists with random weights only: tiny:random")
                model = open_clip.CLIP(**_TINY_CFG)
                preprocess = open_clip.image_transform(_TINY_CFG["vision_cfg"]["image_size"], is_train=False)
                tokenizer_arch = "ViT-B-32"
            else:
                model, preprocess = _create(arch, tag, weights)
                tokenizer_arch = arch
        self._set_preprocess(preprocess)
        self.model = model.to(device).eval()
        self.tokenizer = open_clip.get_tokenizer(tokenizer_arch)
        with torch.inference_mode():
            probe = self.model.encode_text(self.tokenizer(["a photo"]).to(device))
        self.dimension = int(probe.shape[-1])

    def _encode(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(batch)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        tokens = self.tokenizer([str(text) for text in texts]).to(self.device)
        with self.autocast():
            features = self.model.encode_text(tokens)
        return normalise(features.float().cpu().numpy())


def _create(arch: str, tag: str, weights: Path | None) -> tuple[torch.nn.Module, object]:
    """Build ``arch`` with weights from a local file, the Hugging Face cache, or a download."""
    if arch not in open_clip.list_models():
        raise ModelLoadError(f"unknown open_clip model {arch!r}; see open_clip.list_models()")
    if tag == "random":
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
        return model, preprocess
    config = open_clip.get_pretrained_cfg(arch, tag)
    if weights is None and not config:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise ModelLoadError(f"open_clip has no weights {tag!r} for {arch}; known tags: {tags}")
    if config.get("quick_gelu") and not arch.endswith("-quickgelu"):
        arch_to_build = f"{arch}-quickgelu" if f"{arch}-quickgelu" in open_clip.list_models() else arch
    else:
        arch_to_build = arch
    source = str(weights) if weights is not None else _cached_weights(config)
    if source is None:
        if not _hub_reachable():
            raise ModelLoadError(
                f"CLIP weights {arch}:{tag} are not in the local cache and the model hub cannot be "
                "reached. Run once with network access (they download to ~/.cache/huggingface), or "
                "set VAD_MODEL_WEIGHTS to a downloaded open_clip weights file."
            )
        source = tag
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch_to_build, pretrained=source, **_preprocess_overrides(config)
        )
    except Exception as exc:
        raise ModelLoadError(f"could not load CLIP weights {arch}:{tag} from {source}: {exc}") from exc
    return model, preprocess


def _preprocess_overrides(config: dict) -> dict:
    overrides = {}
    if config.get("mean"):
        overrides["image_mean"] = config["mean"]
    if config.get("std"):
        overrides["image_std"] = config["std"]
    return overrides


def _cached_weights(config: dict) -> str | None:
    """The weights file from the Hugging Face cache, without touching the network."""
    repo = (config.get("hf_hub") or "").strip("/")
    if not repo:
        return None
    from huggingface_hub import try_to_load_from_cache

    for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        cached = try_to_load_from_cache(repo, filename)
        if isinstance(cached, str) and os.path.isfile(cached):
            return cached
    return None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check, so that an offline machine falls back at once instead of retrying."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False

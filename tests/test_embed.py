"""core.embed: the tiny random CLIP, EfficientNet-Lite0, the `auto` fallback and load errors."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import pattern, solid
from PIL import Image
from torchvision import transforms

from core.embed import Embedder, ModelLoadError, TextSearchUnavailable, default_batch_size, load_embedder, normalise
from core.embed.efficientnet import EfficientNetLite0Embedder
from core.embed.openclip import OpenClipEmbedder
from core.embed.torch_backend import resolve_precision
from core.embed.transform import runs_on_tensors, split_transform

IMAGES = [pattern(1, (96, 64)), pattern(2, (50, 120)), solid((255, 255, 255), (30, 30))]


def assert_unit_rows(vectors: np.ndarray, rows: int, dimension: int) -> None:
    assert vectors.shape == (rows, dimension)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_tiny_model_embeds_images(tiny: Embedder) -> None:
    assert tiny.name == "tiny:random"
    assert tiny.dimension == 64
    assert tiny.random_weights
    assert tiny.supports_text
    vectors = tiny.embed_images(IMAGES)
    assert_unit_rows(vectors, len(IMAGES), 64)
    assert not np.allclose(vectors[0], vectors[1])  # different images, different vectors
    # one image alone gets the same vector as in a batch
    np.testing.assert_allclose(tiny.embed_images(IMAGES[:1])[0], vectors[0], atol=1e-5)


def test_tiny_model_embeds_texts(tiny: Embedder) -> None:
    vectors = tiny.embed_texts(["a photo of a cat", "a red bus", "a photo of a cat"])
    assert_unit_rows(vectors, 3, 64)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert not np.allclose(vectors[0], vectors[1])


def test_empty_inputs_give_empty_arrays(tiny: Embedder) -> None:
    assert tiny.embed_images([]).shape == (0, 64)
    assert tiny.embed_texts([]).shape == (0, 64)


def test_random_weights_are_the_same_in_every_instance() -> None:
    # different global RNG states stand for different processes
    torch.manual_seed(1)
    first = OpenClipEmbedder("tiny", "random")
    torch.manual_seed(2)
    second = OpenClipEmbedder("tiny", "random")
    assert first is not second
    np.testing.assert_array_equal(first.embed_images(IMAGES), second.embed_images(IMAGES))
    np.testing.assert_array_equal(first.embed_texts(["a dog"]), second.embed_texts(["a dog"]))


def test_building_a_random_model_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    OpenClipEmbedder("tiny", "random")
    assert torch.equal(torch.rand(3), expected)


def test_tiny_model_needs_random_weights() -> None:
    with pytest.raises(ModelLoadError, match="tiny:random"):
        OpenClipEmbedder("tiny", "openai")


def test_load_embedder_caches() -> None:
    embedder = load_embedder("tiny:random", device="cpu")
    assert load_embedder("tiny:random", device="cpu") is embedder
    assert "RANDOM WEIGHTS" in embedder.describe()
    assert "64-d" in embedder.describe()


def test_efficientnet_lite0() -> None:
    embedder = load_embedder("efficientnet-lite0", device="cpu")
    assert isinstance(embedder, EfficientNetLite0Embedder)
    assert embedder.name == "efficientnet-lite0"
    assert embedder.dimension == 1280
    assert not embedder.supports_text
    vectors = embedder.embed_images(IMAGES)
    assert_unit_rows(vectors, len(IMAGES), 1280)
    assert not np.allclose(vectors[0], vectors[1])
    assert embedder.embed_images([]).shape == (0, 1280)
    with pytest.raises(TextSearchUnavailable, match="CLIP"):
        embedder.embed_texts(["a cat"])


@pytest.fixture
def offline_without_clip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No network and an empty Hugging Face cache, whatever this machine has cached."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    load_embedder.cache_clear()
    yield
    load_embedder.cache_clear()


@pytest.mark.usefixtures("offline_without_clip")
def test_auto_falls_back_to_efficientnet_with_a_notice() -> None:
    embedder = load_embedder("auto", device="cpu")
    assert embedder.name == "efficientnet-lite0"
    assert embedder.dimension == 1280
    assert embedder.notice is not None
    assert "CLIP" in embedder.notice
    assert "EfficientNet-Lite0" in embedder.notice
    assert_unit_rows(embedder.embed_images(IMAGES[:1]), 1, 1280)


@pytest.mark.usefixtures("offline_without_clip")
def test_named_clip_without_weights_offline_says_what_to_do() -> None:
    with pytest.raises(ModelLoadError, match="VAD_MODEL_WEIGHTS"):
        load_embedder("ViT-B-32:openai", device="cpu")


def test_unknown_architecture() -> None:
    with pytest.raises(ModelLoadError, match="NoSuchNet"):
        load_embedder("NoSuchNet:openai", device="cpu")
    with pytest.raises(ModelLoadError, match="NoSuchNet"):
        OpenClipEmbedder("NoSuchNet", "laion")
    with pytest.raises(ModelLoadError, match="arch:tag"):
        load_embedder("NoSuchNet", device="cpu")


def test_unknown_pretrained_tag_lists_the_known_ones() -> None:
    with pytest.raises(ModelLoadError, match="openai"):
        load_embedder("ViT-B-32:no-such-tag", device="cpu")


def test_normalise() -> None:
    vectors = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, [[0.6, 0.8], [0.0, 0.0]])


# --- preprocessing split for worker processes, precision ----------------------------------------


def noise(seed: int, size: tuple[int, int]) -> Image.Image:
    """Random pixels: the hardest case for two resampling kernels to agree on."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize("spec", ["tiny:random", "efficientnet-lite0"])
def test_split_preprocessing_matches_the_full_pipeline(spec: str) -> None:
    embedder = load_embedder(spec, device="cpu")
    transform = embedder.image_transform()
    assert transform is not None
    [resize] = [step for step in transform.steps if isinstance(step, transforms.Resize)]
    assert runs_on_tensors(resize, (341, 256))  # a working copy is shrunk on a tensor
    assert not runs_on_tensors(resize, (50, 40))  # a small image is enlarged by Pillow
    restored = pickle.loads(pickle.dumps(transform))  # it travels to the worker processes
    images = [pattern(1, (320, 200)), pattern(2, (50, 120)), solid((10, 200, 30), (300, 300)), noise(3, (341, 256))]
    pixels = np.stack([restored.pixels(image) for image in images])
    # Pillow's pixels, through the model's own pipeline, to within 2 grey levels
    two_levels = 2 / 255 / min(transform.std) + 1e-6
    expected = torch.stack([embedder.preprocess(image) for image in images])
    torch.testing.assert_close(transform.to_batch(torch.from_numpy(pixels)), expected, atol=two_levels, rtol=0)
    reference = embedder._embed(expected)
    assert cosines(embedder.embed_pixels(pixels), reference).min() >= 0.9999
    np.testing.assert_allclose(embedder.embed_images(images), embedder.embed_pixels(pixels), atol=1e-6)


@pytest.mark.filterwarnings("ignore:Anti-alias option is always applied")
def test_steps_without_a_matching_tensor_kernel_run_on_pillow_images() -> None:
    nearest = transforms.Resize(40, interpolation=transforms.InterpolationMode.NEAREST)
    unsmoothed = transforms.Resize(40, interpolation=transforms.InterpolationMode.BICUBIC, antialias=False)
    for resize in (nearest, unsmoothed):
        pipeline = transforms.Compose(
            [resize, transforms.CenterCrop(32), transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]
        )
        transform = split_transform(pipeline)
        assert transform is not None and not runs_on_tensors(resize, (120, 80))
        image = noise(4, (120, 80))
        # exactly the full pipeline's pixels: a tensor crop after a Pillow resize changes nothing
        torch.testing.assert_close(
            transform.to_batch(torch.from_numpy(transform.pixels(image)[None]))[0], pipeline(image)
        )


def test_a_pipeline_that_does_not_end_in_normalize_is_not_split() -> None:
    assert split_transform(transforms.Compose([transforms.Resize(8), transforms.ToTensor()])) is None
    assert split_transform(lambda image: image) is None


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)  # rows are unit length


def test_bf16_autocast_matches_fp32_on_cpu() -> None:
    images = [pattern(seed, (500, 375)) for seed in range(2)]  # bf16 is slow on CPUs without AMX
    fp32 = OpenClipEmbedder("ViT-B-32", "random", device="cpu", precision="fp32")
    reference = fp32.embed_images(images)
    bf16 = copy.copy(fp32)  # the same weights, another precision
    bf16.precision = "bf16"
    mixed = bf16.embed_images(images)
    assert_unit_rows(mixed, 2, fp32.dimension)
    assert cosines(reference, mixed).min() >= 0.999
    assert not np.array_equal(reference, mixed)  # the forward pass did run in bf16


def test_precision_is_chosen_and_described() -> None:
    assert OpenClipEmbedder("tiny", "random", precision="auto").precision == "fp32"  # on a CPU
    embedder = OpenClipEmbedder("tiny", "random", precision="bf16")
    assert embedder.precision == "bf16"
    assert "cpu bf16" in embedder.describe()
    assert "fp32" not in load_embedder("tiny:random", device="cpu").describe()


def test_precision_auto_is_fp16_on_cuda_only() -> None:
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("auto", "cuda:1") == "fp16"
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="fp64"):
        resolve_precision("fp64", "cpu")
    assert default_batch_size("cpu") == 32 and default_batch_size("cuda") == 256


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_on_cuda_matches_fp32() -> None:
    images = [pattern(seed, (500, 375)) for seed in range(8)]
    fp32 = OpenClipEmbedder("ViT-B-32", "random", device="cuda", precision="fp32")
    fp16 = OpenClipEmbedder("ViT-B-32", "random", device="cuda", precision="auto")
    assert fp16.precision == "fp16"
    pixels = np.stack([fp16.image_transform().pixels(image) for image in images])
    assert cosines(fp32.embed_pixels(pixels), fp16.embed_pixels(pixels)).min() >= 0.999
    cpu = OpenClipEmbedder("ViT-B-32", "random", device="cpu", precision="fp32")
    assert cosines(cpu.embed_pixels(pixels), fp16.embed_pixels(pixels)).min() >= 0.999

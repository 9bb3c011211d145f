"""The one-channel SegFormer and any-resolution inference (tiling, bicubic upsampling, clamping)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import SegformerConfig, SegformerForSemanticSegmentation

from samlab.models.directsam.model import (
    SEGFORMER_VARIANTS,
    build_segformer,
    predict_probabilities,
    segformer_logits,
)

from .conftest import TINY_SEGFORMER


def test_variants_and_overrides():
    assert SEGFORMER_VARIANTS["b5"]["depths"] == [3, 6, 40, 3]
    model = build_segformer("b0", config_overrides=TINY_SEGFORMER["config_overrides"])
    assert model.config.num_labels == 1 and model.config.hidden_sizes == [8, 16, 32, 64]
    logits = segformer_logits(model)(torch.zeros(2, 3, 64, 64))
    assert logits.shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="unknown SegFormer variant"):
        build_segformer("b9")


def test_pretrained_folder_gets_a_one_channel_head(tmp_path):
    config = SegformerConfig(num_labels=5, **(SEGFORMER_VARIANTS["b0"] | TINY_SEGFORMER["config_overrides"]))
    source = SegformerForSemanticSegmentation(config)
    source.save_pretrained(tmp_path / "ckpt")
    loaded = build_segformer(pretrained=str(tmp_path / "ckpt"))
    assert loaded.config.num_labels == 1
    first = next(k for k in source.state_dict() if k.startswith("segformer."))
    assert torch.equal(loaded.state_dict()[first], source.state_dict()[first])  # the encoder is kept


class PoolSegmenter:
    """A stand-in network: logits = 4x average-pooled first channel (any input size), counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return F.avg_pool2d(images[:, :1], 4) * 3


def test_small_images_are_resized_and_upsampled_bicubically():
    segment = PoolSegmenter()
    image = torch.randn(3, 30, 50)
    out = predict_probabilities(segment, image, image_size=64)
    resized = F.interpolate(image[None], size=(64, 64), mode="bilinear", align_corners=False)
    expected = F.interpolate(segment(resized).sigmoid(), size=(30, 50), mode="bicubic", align_corners=False)
    torch.testing.assert_close(out, expected[0, 0].clamp(0, 1))
    assert out.shape == (30, 50) and out.min() >= 0 and out.max() <= 1


def test_large_images_are_tiled_at_full_resolution():
    segment = PoolSegmenter()
    ys, xs = torch.meshgrid(torch.arange(100.0), torch.arange(152.0), indexing="ij")
    image = (torch.sin(xs / 9) + torch.cos(ys / 7)).expand(3, 100, 152)  # smooth: pooling grids barely matter
    tiled = predict_probabilities(segment, image, image_size=64, overlap=0.25)
    # Stride 48: rows start at 0, 36; columns at 0, 48, 88 (all on the 4-pixel grid of the logits): six tiles.
    assert segment.calls == 6 and tiled.shape == (100, 152)
    whole = F.interpolate(segment(image[None]).sigmoid(), size=(100, 152), mode="bicubic", align_corners=False)[0, 0]
    # Each tile sees the image at full resolution: equal to one whole-image pass up to the tile seams.
    assert (tiled - whole.clamp(0, 1)).abs().mean() < 0.01
    shrunk = predict_probabilities(PoolSegmenter(), image, image_size=64, tile=False)
    assert (shrunk - whole.clamp(0, 1)).abs().mean() > 2 * (tiled - whole.clamp(0, 1)).abs().mean()


def test_clamped_to_unit_range():
    out = predict_probabilities(lambda x: torch.full((1, 1, 16, 16), 50.0), torch.zeros(3, 64, 64), 64)
    assert out.max() == 1.0
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        predict_probabilities(PoolSegmenter(), torch.zeros(64, 64), 64)

"""The one-channel SegFormer and any-size inference (whole-image resize, tiling, logits upsampled then sigmoid)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import SegformerConfig, SegformerForSemanticSegmentation

from samlab.models.directsam.model import (
    SEGFORMER_VARIANTS,
    boundary_probabilities,
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


@pytest.mark.parametrize("size", [(30, 50), (100, 152)])
def test_whole_image_is_resized_logits_upsampled_then_sigmoid(size):
    # DirectSAM: the image resized to the model's side (by default, whatever its size), the logits upsampled
    # (bicubic) to the output size, then the sigmoid.
    segment = PoolSegmenter()
    image = torch.randn(3, *size)
    out = predict_probabilities(segment, image, image_size=64)
    resized = F.interpolate(image[None], size=(64, 64), mode="bicubic", align_corners=False, antialias=True)
    expected = F.interpolate(segment(resized), size=size, mode="bicubic", align_corners=False).sigmoid()
    torch.testing.assert_close(out, expected[0, 0])
    assert out.shape == size and segment.calls == 2


def test_large_images_are_tiled_at_full_resolution():
    segment = PoolSegmenter()
    ys, xs = torch.meshgrid(torch.arange(100.0), torch.arange(152.0), indexing="ij")
    image = (torch.sin(xs / 9) + torch.cos(ys / 7)).expand(3, 100, 152)  # smooth: pooling grids barely matter
    tiled = predict_probabilities(segment, image, image_size=64, tile=True, overlap=0.25)
    # Stride 48: rows start at 0, 36; columns at 0, 48, 88 (all on the 4-pixel grid of the logits): six tiles.
    assert segment.calls == 6 and tiled.shape == (100, 152)
    whole = boundary_probabilities(segment(image[None]), (100, 152))[0]
    # Each tile sees the image at full resolution: equal to one whole-image pass up to the tile seams.
    assert (tiled - whole).abs().mean() < 0.01
    shrunk = predict_probabilities(PoolSegmenter(), image, image_size=64)
    assert (shrunk - whole).abs().mean() > 2 * (tiled - whole).abs().mean()


def test_sigmoid_after_upsampling_needs_no_clamp():
    logits = torch.full((1, 1, 8, 8), -20.0)
    logits[..., ::2, ::2] = 20.0  # bicubic overshoots between extremes: after the sigmoid it cannot leave [0, 1]
    out = boundary_probabilities(logits, (32, 32))
    torch.testing.assert_close(out, F.interpolate(logits, size=(32, 32), mode="bicubic").sigmoid()[:, 0])
    assert out.min() >= 0 and out.max() <= 1 and out.shape == (1, 32, 32)
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        predict_probabilities(PoolSegmenter(), torch.zeros(64, 64), 64)

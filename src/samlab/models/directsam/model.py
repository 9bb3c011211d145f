"""The plain-PyTorch part of DirectSAM: a one-channel SegFormer and its any-resolution inference.

The network is transformers' ``SegformerForSemanticSegmentation`` with ``num_labels=1``: its logits (one boundary
channel, at a quarter of the input resolution) are upsampled (bicubic) to the output size and then passed through a
sigmoid, as DirectSAM's ``model/directsam.py`` does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import SegformerConfig, SegformerForSemanticSegmentation

from samlab.errors import DataError

log = logging.getLogger(__name__)

# Mix Transformer sizes of the SegFormer paper (nvidia/mit-b0 ... mit-b5); heads, ratios and patches are shared.
SEGFORMER_VARIANTS: dict[str, dict[str, Any]] = {
    "b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768},
    "b3": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 18, 3], "decoder_hidden_size": 768},
    "b4": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 8, 27, 3], "decoder_hidden_size": 768},
    "b5": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 6, 40, 3], "decoder_hidden_size": 768},
}

Segmenter = Callable[[torch.Tensor], torch.Tensor]


def build_segformer(
    variant: str = "b0", pretrained: str | None = None, config_overrides: dict[str, Any] | None = None
) -> SegformerForSemanticSegmentation:
    """A one-output-channel SegFormer.

    Args:
        variant: ``"b0"`` ... ``"b5"``: the encoder size when no ``pretrained`` folder is given.
        pretrained: a local folder for ``from_pretrained`` (e.g. ``nvidia/mit-b5`` downloaded with
            ``huggingface-cli download nvidia/mit-b5 --local-dir checkpoints/mit-b5``, or a DirectSAM checkpoint);
            its head is replaced when it does not have one channel.
        config_overrides: ``SegformerConfig`` fields to change (e.g. tiny test sizes).

    Returns:
        The model, randomly initialised unless ``pretrained`` is given.
    """
    overrides = dict(config_overrides or {})
    if pretrained is not None:
        return SegformerForSemanticSegmentation.from_pretrained(
            pretrained, num_labels=1, ignore_mismatched_sizes=True, **overrides
        )
    if variant not in SEGFORMER_VARIANTS:
        raise ValueError(f"unknown SegFormer variant {variant!r}; expected one of {', '.join(SEGFORMER_VARIANTS)}")
    return SegformerForSemanticSegmentation(
        SegformerConfig(**(SEGFORMER_VARIANTS[variant] | overrides | {"num_labels": 1}))
    )


def load_directsam_folder(folder: str | PathLike[str]) -> tuple[SegformerForSemanticSegmentation, int | None]:
    """A DirectSAM checkpoint folder as released on the hub (or written by :func:`save_pretrained`): the
    one-label SegFormer and the resolution it was trained at (the ``size`` of its ``preprocessor_config.json``;
    None when the folder does not say).

    The weights are loaded strictly; missing or unexpected keys are a :class:`DataError` naming the folder, as
    is a folder without ``config.json`` or whose model has more than one label.
    """
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise DataError(folder, "not a SegFormer checkpoint folder (no config.json)")
    config = SegformerConfig.from_pretrained(folder)
    if config.num_labels != 1:
        raise DataError(folder, f"a DirectSAM checkpoint has one label (boundary); this one has {config.num_labels}")
    model, info = SegformerForSemanticSegmentation.from_pretrained(folder, output_loading_info=True)
    missing, unexpected = sorted(info["missing_keys"]), sorted(info["unexpected_keys"])
    if missing or unexpected or info.get("mismatched_keys"):
        raise DataError(
            folder,
            f"checkpoint does not fit its config: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]}), mismatched {info.get('mismatched_keys')}",
        )
    log.info("checkpoint %s: 0 missing, 0 unexpected keys", folder)
    resolution = None
    processor_file = folder / "preprocessor_config.json"
    if processor_file.is_file():
        size = json.loads(processor_file.read_text(encoding="utf-8")).get("size") or {}
        resolution = size.get("height") if isinstance(size, dict) else None
    return model.train(), resolution


def save_pretrained(model: SegformerForSemanticSegmentation, out: str | PathLike[str], image_size: int) -> None:
    """Write ``model`` as a DirectSAM checkpoint folder (``config.json``, ``model.safetensors`` and a
    ``SegformerImageProcessor`` config at ``image_size``), as DirectSAM's released checkpoints: loadable by
    ``AutoModelForSemanticSegmentation.from_pretrained`` and by :func:`load_directsam_folder`."""
    from transformers import SegformerImageProcessor

    from samlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    model.save_pretrained(out)
    processor = SegformerImageProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        do_reduce_labels=False,
    )
    processor.save_pretrained(out)


def segformer_logits(model: SegformerForSemanticSegmentation) -> Segmenter:
    """``[B, 3, S, S]`` normalised images -> ``[B, 1, S/4, S/4]`` boundary logits of ``model``."""
    return lambda images: model(pixel_values=images).logits


def boundary_probabilities(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B, 1, h, w]`` logits -> ``[B, H, W]`` probabilities: bicubic upsampling of the logits to ``size``, then
    the sigmoid (DirectSAM's order, so the probabilities stay in [0, 1])."""
    return F.interpolate(logits.float(), size=size, mode="bicubic", align_corners=False)[:, 0].sigmoid()


def _tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile origins covering ``[0, length)``: every ``stride``, the last one flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


@torch.no_grad()
def predict_probabilities(
    segment: Segmenter, image: torch.Tensor, image_size: int, tile: bool = False, overlap: float = 0.25
) -> torch.Tensor:
    """Boundary probabilities of one image of any size.

    Args:
        segment: ``[B, 3, S, S]`` normalised images -> ``[B, 1, h, w]`` logits (see :func:`segformer_logits`).
        image: ``[3, H, W]`` float normalised image.
        image_size: the model's input side ``S``.
        tile: False (DirectSAM): the whole image is resized (bicubic, antialiased) to ``S x S``. True: when the image
            is larger than ``S`` on a side, ``S x S`` tiles at full resolution are run instead (overlapping by
            ``overlap`` of a tile, probabilities averaged where they overlap).
        overlap: tile overlap fraction in [0, 1).

    Returns:
        ``[H, W]`` float probabilities in [0, 1] (:func:`boundary_probabilities` at the image's size).
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"predict_probabilities expects a [3, H, W] image, got shape {tuple(image.shape)}")
    height, width = image.shape[1:]
    if not tile or max(height, width) <= image_size:
        resized = F.interpolate(
            image[None], size=(image_size, image_size), mode="bicubic", align_corners=False, antialias=True
        )
        return boundary_probabilities(segment(resized), (height, width))[0]
    # Sides shorter than a tile are padded (and cropped back), so every tile runs at the model's resolution.
    padded = F.pad(image, (0, max(image_size - width, 0), 0, max(image_size - height, 0)))
    full_h, full_w = padded.shape[1:]
    stride = max(int(image_size * (1 - overlap)), 1)
    total = torch.zeros((full_h, full_w), dtype=torch.float32, device=image.device)
    weight = torch.zeros_like(total)
    for y in _tile_starts(full_h, image_size, stride):
        for x in _tile_starts(full_w, image_size, stride):
            crop = padded[None, :, y : y + image_size, x : x + image_size]
            tile_size = (image_size, image_size)
            total[y : y + image_size, x : x + image_size] += boundary_probabilities(segment(crop), tile_size)[0]
            weight[y : y + image_size, x : x + image_size] += 1
    return (total / weight)[:height, :width]

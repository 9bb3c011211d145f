"""The tiny SAM 2 of the tests: model overrides, click prompting, module and clip builders (shared by the SAM 2,
callback and export tests; plain values and functions, so importing it costs nothing)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from samlab.data.batch import VideoBatch, collate_clips
from samlab.data.sampling import Clip
from samlab.models.sam2.prompts import PromptConfig

SIZE = 64
"""Image size of the tiny SAM 2 (px)."""
# Hiera tiny with a narrow trunk and one memory-attention layer: checkpoints of 38 MB instead of 156 MB.
SMALL = [
    "++model.image_encoder.trunk.embed_dim=32",
    "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.dim_feedforward=256",
]
"""Hydra overrides of ``sam2.1_hiera_t`` for the tiny model (``model_overrides`` / ``overrides``)."""
CLICKS = PromptConfig(
    prob_to_use_pt_input_for_train=1.0,
    prob_to_use_box_input_for_train=0.0,
    num_init_cond_frames_for_train=1,
    num_frames_to_correct_for_train=1,
    num_correction_pt_per_frame=1,
)
"""One click on the first frame, one correction click on one more frame."""


def make_module(**kwargs):
    """A tiny ``SAM2VideoModule`` (``sam2.1_hiera_t`` with :data:`SMALL`, :data:`SIZE` px), seeded; ``kwargs``
    override its arguments."""
    from samlab.models.sam2.module import SAM2VideoModule

    torch.manual_seed(0)
    kwargs = {"model_overrides": SMALL} | kwargs
    return SAM2VideoModule(variant="sam2.1_hiera_t", image_size=SIZE, **kwargs)


def make_batch(
    name: str,
    num_frames: int = 3,
    num_objects: int = 2,
    seed: int = 0,
    size: int = SIZE,
    orig_size: tuple[int, int] = (32, 48),
) -> VideoBatch:
    """One clip ``name`` of ``num_frames`` noise frames (``size`` px) with ``num_objects`` still rectangles, one
    above the other (up to 2 at 64 px), recorded as of original size ``orig_size``."""
    generator = np.random.default_rng(seed)
    masks = np.zeros((num_frames, num_objects, size, size), dtype=bool)
    step = size // SIZE
    for o in range(num_objects):
        masks[:, o, (4 + 28 * o) * step : (24 + 28 * o) * step, (8 + 2 * o) * step : 40 * step] = True
    frames = [torch.from_numpy(generator.standard_normal((3, size, size), dtype=np.float32)) for _ in masks]
    clip = Clip(name, frames, masks, list(range(1, num_objects + 1)), list(range(num_frames)), orig_size)
    return collate_clips([clip], num_skipped=1)


def loader(batches: list[VideoBatch]) -> DataLoader:
    """A loader yielding ``batches`` as they are (one ``VideoBatch`` per step)."""
    return DataLoader(batches, batch_size=None, collate_fn=lambda batch: batch)

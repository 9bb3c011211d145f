"""One augmented view, a pair of views of one image, and the batch of pairs the MASA module trains on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class View:
    """One augmented view: ``image`` ``[S, S, 3]`` uint8 RGB, ``boxes`` ``[N, 4]`` float32 x1 y1 x2 y2 pixels of the
    visible instances, ``instance_ids`` ``[N]`` int64 (annotation ids; negative for mixup partner instances) and,
    when asked for, ``masks`` ``[N, S, S]`` bool."""

    image: np.ndarray
    boxes: np.ndarray
    instance_ids: np.ndarray
    masks: np.ndarray | None = None


@dataclass
class PairSample:
    """Key and reference views of the image ``name``; ``skipped`` counts bad images replaced by this one."""

    name: str
    key: View
    ref: View
    skipped: int = 0


@dataclass
class PairBatch:
    """A batch of view pairs.

    ``key_images`` / ``ref_images``: ``[B, 3, S, S]`` (uint8 from the loader, float32 normalised after the device
    transfer); ``key_boxes`` / ``ref_boxes``: ``B`` tensors ``[N_b, 4]`` float32 x1 y1 x2 y2 pixels;
    ``key_ids`` / ``ref_ids``: ``B`` tensors ``[N_b]`` int64 instance ids (same id = same object in the two views
    of one image); ``names``: the images; ``num_skipped``: bad samples replaced in this batch.
    """

    key_images: torch.Tensor
    ref_images: torch.Tensor
    key_boxes: list[torch.Tensor]
    ref_boxes: list[torch.Tensor]
    key_ids: list[torch.Tensor]
    ref_ids: list[torch.Tensor]
    names: list[str] = field(default_factory=list)
    num_skipped: int = 0


def collate_pairs(samples: Sequence[PairSample]) -> PairBatch:
    """Stack :class:`PairSample` views into a :class:`PairBatch` (images as ``[B, 3, S, S]`` uint8)."""

    def images(views: list[View]) -> torch.Tensor:
        return torch.from_numpy(np.stack([v.image for v in views])).permute(0, 3, 1, 2).contiguous()

    keys = [s.key for s in samples]
    refs = [s.ref for s in samples]
    return PairBatch(
        key_images=images(keys),
        ref_images=images(refs),
        key_boxes=[torch.from_numpy(v.boxes) for v in keys],
        ref_boxes=[torch.from_numpy(v.boxes) for v in refs],
        key_ids=[torch.from_numpy(v.instance_ids) for v in keys],
        ref_ids=[torch.from_numpy(v.instance_ids) for v in refs],
        names=[s.name for s in samples],
        num_skipped=sum(s.skipped for s in samples),
    )

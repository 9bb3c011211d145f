"""The boundary sample and batch layout (DirectSAM), and their collate function."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class BoundarySample:
    """One item: ``image`` ``[3, S, S]`` uint8, ``target`` ``[S, S]`` float32 in {0, 1}, ``name`` (unique within
    its source), ``image_path``, ``orig_size`` (H, W) and ``source`` (dataset folder)."""

    image: torch.Tensor
    target: torch.Tensor
    name: str
    image_path: str
    orig_size: tuple[int, int]
    source: str


@dataclass
class BoundaryBatch:
    """Collated :class:`BoundarySample`: ``images`` ``[B, 3, S, S]`` (uint8, float32 normalised once on the device),
    ``targets`` ``[B, S, S]`` float32, ``orig_sizes`` ``[B, 2]`` int64 (H, W), per-sample lists ``names``,
    ``image_paths``, ``sources``, and ``num_skipped`` (bad samples replaced in this batch)."""

    images: torch.Tensor
    targets: torch.Tensor
    orig_sizes: torch.Tensor
    names: list[str]
    image_paths: list[str]
    sources: list[str]
    num_skipped: int = 0


def collate_boundaries(items: Sequence[BoundarySample | tuple[BoundarySample, int]]) -> BoundaryBatch:
    """Stack :class:`BoundarySample` items (or ``(sample, skipped)`` pairs) into a :class:`BoundaryBatch`."""
    samples = [item[0] if isinstance(item, tuple) else item for item in items]
    skipped = sum(item[1] for item in items if isinstance(item, tuple))
    return BoundaryBatch(
        images=torch.stack([s.image for s in samples]),
        targets=torch.stack([s.target for s in samples]),
        orig_sizes=torch.tensor([s.orig_size for s in samples], dtype=torch.int64),
        names=[s.name for s in samples],
        image_paths=[s.image_path for s in samples],
        sources=[s.source for s in samples],
        num_skipped=skipped,
    )

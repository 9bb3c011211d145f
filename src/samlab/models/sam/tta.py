"""Test-time augmentation for prompted SAM: horizontal flip and down-scales of the image, prompts moved alike.

SAM's input side is fixed (its position embeddings are), so a scale ``s <= 1`` shrinks the image content inside the
``S x S`` input (more padding) instead of changing the input size. Each view's low-resolution logits are mapped back
to the un-augmented valid region, where the module averages the views' probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from samlab.models.sam.prompts import Prompts


@dataclass(frozen=True)
class TTAView:
    """One augmented view: the image content scaled by ``scale`` in (0, 1] and flipped left-right when ``hflip``."""

    scale: float = 1.0
    hflip: bool = False

    def content_shape(self, valid: tuple[int, int]) -> tuple[int, int]:
        """``(h, w)`` of the ``valid`` image content in this view."""
        return max(1, round(valid[0] * self.scale)), max(1, round(valid[1] * self.scale))


def tta_views(scales: Sequence[float] = (1.0,), hflip: bool = False) -> list[TTAView]:
    """Every view of ``scales`` (each in (0, 1]), each also flipped when ``hflip``; the plain view first when 1.0 is
    among the scales."""
    if not scales or any(not 0.0 < s <= 1.0 for s in scales):
        raise ValueError(f"TTA scales must be in (0, 1] (SAM's input size is fixed), got {list(scales)}")
    return [TTAView(float(s), flip) for s in scales for flip in ((False, True) if hflip else (False,))]


def view_image(image: torch.Tensor, valid: tuple[int, int], view: TTAView) -> torch.Tensor:
    """The view of a normalised ``[3, S, S]`` input whose top-left ``valid`` = ``(h, w)`` pixels are the image (the
    rest padding): the content flipped and/or resized (bilinear) to ``view.content_shape(valid)``, zero padded."""
    height, width = valid
    content = image[:, :height, :width]
    if view.hflip:
        content = content.flip(-1)
    shape = view.content_shape(valid)
    if shape != (height, width):
        content = F.interpolate(content[None], size=shape, mode="bilinear", align_corners=False, antialias=True)[0]
    out = torch.zeros_like(image)
    out[:, : shape[0], : shape[1]] = content
    return out


def view_prompts(prompts: Prompts, valid: tuple[int, int], view: TTAView) -> Prompts:
    """``prompts`` (pixel indices in the un-augmented input) moved into ``view``: x mirrored in the valid width
    (a box's corners swap), then pixel centres scaled to the view's content size."""
    height, width = valid
    points, boxes = prompts.points.clone(), prompts.boxes.clone()
    if view.hflip:
        points[..., 0] = width - 1 - points[..., 0]
        boxes = torch.stack([width - 1 - boxes[:, 2], boxes[:, 1], width - 1 - boxes[:, 0], boxes[:, 3]], dim=1)
    new_height, new_width = view.content_shape(valid)
    scale = points.new_tensor([new_width / width, new_height / height])
    points = (points + 0.5) * scale - 0.5
    boxes = ((boxes.view(-1, 2, 2) + 0.5) * scale - 0.5).view(-1, 4)
    return Prompts(points, prompts.point_labels, boxes * prompts.has_box[:, None], prompts.has_box)


def unview_logits(logits: torch.Tensor, image_size: int, valid: tuple[int, int], view: TTAView) -> torch.Tensor:
    """Low-resolution logits ``[N, 1, S/4, S/4]`` of a view back to the un-augmented valid region: ``[N, 1, h, w]``
    (upsampled to ``S``, the view's content cropped and resized to ``valid``, un-flipped)."""
    up = F.interpolate(logits, size=(image_size, image_size), mode="bilinear", align_corners=False)
    new_height, new_width = view.content_shape(valid)
    content = up[..., :new_height, :new_width]
    if (new_height, new_width) != tuple(valid):
        content = F.interpolate(content, size=tuple(valid), mode="bilinear", align_corners=False)
    return content.flip(-1) if view.hflip else content

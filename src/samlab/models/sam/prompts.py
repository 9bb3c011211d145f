"""Prompts from ground truth for SAM prompt fine-tuning: jittered boxes, clicks inside the mask, correction clicks.

The samplers are SAM 2's training ones from :mod:`samlab.models.sam2.prompts` (box jitter of 10 % of the box side
capped at 20 px, clicks drawn uniformly from a region); this module decides which object gets which prompt and keeps
them in one padded layout, :class:`Prompts`, that segment_anything's prompt encoder takes as is. Coordinates are
``(x, y)`` pixel indices in the model input (the prompt encoder adds the half-pixel offset); point labels are
1 positive, 0 negative, -1 padding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from samlab.models.sam2.prompts import center_error_click, noisy_box_prompt, random_error_click

PromptMode = Literal["box", "point", "mix"]
PADDING_LABEL = -1


@dataclass
class PromptConfig:
    """How objects are prompted from their ground-truth masks (plain values, usable from YAML).

    Attributes:
        mode: ``"box"`` (every object a jittered box), ``"point"`` (clicks) or ``"mix"`` (box with ``box_prob``,
            else clicks, drawn per object).
        box_prob: chance of a box per object in ``"mix"`` mode.
        box_noise: box jitter as a fraction of the box side (SAM: 0.1).
        box_noise_bound: box jitter cap in pixels (SAM: 20).
        max_points: positive clicks per clicked object, uniform in ``[1, max_points]``, uniform inside the mask.
        max_negative_points: negative clicks per clicked object, uniform in ``[0, max_negative_points]``, uniform
            outside the mask.
        num_correction_steps: training rounds after the first prediction, each adding one click drawn from the error
            region (missed object: positive, spill: negative) and feeding the previous low-resolution logits back as
            mask prompt (SAM's interactive training; 0 turns it off).
        eval_mode: oracle prompt in validation, test and prediction: ``"box"`` (tight box) or ``"point"`` (one
            positive click at the mask centre, the pixel farthest from its border); None follows ``mode`` (``"mix"``
            evaluates with boxes).
    """

    mode: PromptMode = "box"
    box_prob: float = 0.5
    box_noise: float = 0.1
    box_noise_bound: float = 20.0
    max_points: int = 1
    max_negative_points: int = 0
    num_correction_steps: int = 0
    eval_mode: Literal["box", "point"] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("box", "point", "mix"):
            raise ValueError(f"PromptConfig.mode must be 'box', 'point' or 'mix', got {self.mode!r}")
        if self.eval_mode not in (None, "box", "point"):
            raise ValueError(f"PromptConfig.eval_mode must be 'box', 'point' or None, got {self.eval_mode!r}")
        if not 0.0 <= self.box_prob <= 1.0:
            raise ValueError(f"PromptConfig.box_prob must be in [0, 1], got {self.box_prob}")
        if self.max_points < 1 or self.max_negative_points < 0 or self.num_correction_steps < 0:
            raise ValueError(
                "PromptConfig needs max_points >= 1, max_negative_points >= 0 and num_correction_steps >= 0, got "
                f"{self.max_points}, {self.max_negative_points}, {self.num_correction_steps}"
            )

    @property
    def evaluation_mode(self) -> Literal["box", "point"]:
        """The oracle prompt kind of evaluation."""
        if self.eval_mode is not None:
            return self.eval_mode
        return "point" if self.mode == "point" else "box"


@dataclass
class Prompts:
    """Prompts of ``N`` objects, padded to a common number of points ``P``.

    ``points [N, P, 2]`` float32 (x, y); ``point_labels [N, P]`` int32 (1, 0, -1 padding); ``boxes [N, 4]`` float32
    ``x0, y0, x1, y1`` (corner pixels, zeros where there is no box); ``has_box [N]`` bool.
    """

    points: torch.Tensor
    point_labels: torch.Tensor
    boxes: torch.Tensor
    has_box: torch.Tensor

    def __len__(self) -> int:
        return int(self.has_box.shape[0])

    def select(self, index: torch.Tensor | slice) -> Prompts:
        """The prompts of the objects ``index`` (a slice, indices or a bool mask), all-padding columns dropped."""
        return Prompts(self.points[index], self.point_labels[index], self.boxes[index], self.has_box[index]).compact()

    def compact(self) -> Prompts:
        """The same prompts without the point columns that are padding for every object."""
        used = (self.point_labels != PADDING_LABEL).any(dim=0)
        if bool(used.all()):
            return self
        return Prompts(self.points[:, used], self.point_labels[:, used], self.boxes, self.has_box)

    def add_points(self, coords: torch.Tensor, labels: torch.Tensor) -> Prompts:
        """These prompts plus one more point per object: ``coords [N, 1, 2]``, ``labels [N, 1]``."""
        return Prompts(
            torch.cat([self.points, coords.to(self.points)], dim=1),
            torch.cat([self.point_labels, labels.to(self.point_labels)], dim=1),
            self.boxes,
            self.has_box,
        )

    def single_click(self) -> torch.Tensor:
        """``[N]`` bool: the object's only prompt is one click (ambiguous: SAM answers with three masks)."""
        return ~self.has_box & ((self.point_labels != PADDING_LABEL).sum(dim=1) == 1)

    def groups(self) -> Iterator[tuple[torch.Tensor, bool]]:
        """Split the objects into the groups one decoder call can take: ``(indices [n], multimask)`` for the box
        objects, the single-click objects (multimask) and the other clicked objects, in that order, non-empty only."""
        single = self.single_click()
        for members, multimask in ((self.has_box, False), (single, True), (~self.has_box & ~single, False)):
            index = torch.nonzero(members).flatten()
            if index.numel():
                yield index, multimask

    def to_dicts(self) -> list[dict]:
        """One dict per object: ``"points"`` float ``[n, 2]`` (x, y), ``"point_labels"`` int ``[n]`` (1 positive,
        0 negative; padding left out) and ``"box"`` float ``[4]`` xyxy or None, as numpy arrays on the CPU."""
        out = []
        for i in range(len(self)):
            real = self.point_labels[i] != PADDING_LABEL
            out.append(
                {
                    "points": self.points[i][real].cpu().numpy(),
                    "point_labels": self.point_labels[i][real].cpu().numpy(),
                    "box": self.boxes[i].cpu().numpy() if bool(self.has_box[i]) else None,
                }
            )
        return out


def _uniform_counts(num: int, low: int, high: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """``[num]`` integers uniform in ``[low, high]``."""
    device = generator.device if generator is not None else device
    return torch.randint(low, high + 1, (num,), generator=generator, device=device)


def _clicks(
    masks: torch.Tensor, pred: torch.Tensor | None, count: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` independent clicks per object from :func:`random_error_click`: ``[N, count, 2]``, ``[N, count]``."""
    clicks = [random_error_click(masks, pred, generator) for _ in range(count)]
    if not clicks:
        num = masks.shape[0]
        return masks.new_zeros((num, 0, 2), dtype=torch.float32), masks.new_zeros((num, 0), dtype=torch.int32)
    return torch.cat([c for c, _ in clicks], dim=1), torch.cat([lab for _, lab in clicks], dim=1)


def sample_prompts(masks: torch.Tensor, config: PromptConfig, generator: torch.Generator | None = None) -> Prompts:
    """Training prompts of ``N`` objects from their ground-truth masks.

    Each object gets a box (``noisy_box_prompt``: every coordinate moves uniformly by up to
    ``min(box_noise * side, box_noise_bound)`` pixels) or clicks (``k`` positive clicks uniform inside the mask,
    ``k`` uniform in ``[1, max_points]``, and ``n`` negative clicks uniform outside it, ``n`` uniform in
    ``[0, max_negative_points]``), as ``config.mode`` and ``box_prob`` say.

    Args:
        masks: ``[N, H, W]`` bool ground-truth masks at the model input size.
        config: the prompt settings.
        generator: random source (any device); the global one when None.

    Returns:
        The :class:`Prompts` (points padded to ``max_points + max_negative_points`` columns, then compacted).
    """
    num = masks.shape[0]
    device = masks.device
    if config.mode == "box":
        use_box = torch.ones(num, dtype=torch.bool, device=device)
    elif config.mode == "point":
        use_box = torch.zeros(num, dtype=torch.bool, device=device)
    else:
        draws = torch.rand(num, generator=generator, device=generator.device if generator is not None else device)
        use_box = (draws < config.box_prob).to(device)
    corners, _, _ = noisy_box_prompt(masks, config.box_noise, config.box_noise_bound, generator)
    boxes = corners.reshape(num, 4) * use_box[:, None]
    positives, positive_labels = _clicks(masks, None, config.max_points, generator)
    negatives, negative_labels = _clicks(masks, torch.ones_like(masks), config.max_negative_points, generator)
    num_pos = _uniform_counts(num, 1, config.max_points, generator, device).to(device)
    num_neg = _uniform_counts(num, 0, config.max_negative_points, generator, device).to(device)
    keep_pos = torch.arange(config.max_points, device=device)[None] < num_pos[:, None]
    keep_neg = torch.arange(config.max_negative_points, device=device)[None] < num_neg[:, None]
    keep = torch.cat([keep_pos, keep_neg], dim=1) & ~use_box[:, None]
    points = torch.cat([positives, negatives], dim=1) * keep[..., None]
    labels = torch.where(keep, torch.cat([positive_labels, negative_labels], dim=1), PADDING_LABEL)
    return Prompts(points, labels.to(torch.int32), boxes, use_box).compact()


def oracle_prompts(masks: torch.Tensor, mode: Literal["box", "point"]) -> Prompts:
    """Deterministic evaluation prompts: the tight box of each mask (``"box"``) or one positive click at the pixel
    farthest from the mask border (``"point"``, SAM's centre click). ``masks``: ``[N, H, W]`` bool, not empty."""
    num = masks.shape[0]
    device = masks.device
    if mode == "box":
        corners, _, _ = noisy_box_prompt(masks, noise=0.0)
        return Prompts(
            masks.new_zeros((num, 0, 2), dtype=torch.float32),
            masks.new_zeros((num, 0), dtype=torch.int32),
            corners.reshape(num, 4),
            torch.ones(num, dtype=torch.bool, device=device),
        )
    coords, labels = center_error_click(masks, None)
    return Prompts(
        coords, labels.to(torch.int32), coords.new_zeros((num, 4)), torch.zeros(num, dtype=torch.bool, device=device)
    )


def correction_click(
    masks: torch.Tensor, pred: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The next click of interactive training: uniform over the error region of ``pred`` (``[N, H, W]`` bool)
    against ``masks`` (``[N, H, W]`` bool); positive on a missed pixel, negative on a spilled one.

    Returns ``coords [N, 1, 2]`` float32 and ``labels [N, 1]`` int32.
    """
    coords, labels = random_error_click(masks, pred, generator)
    return coords, labels.to(torch.int32)

"""Prompts for SAM prompt fine-tuning and evaluation: jittered boxes, clicks inside the mask, box-centre clicks,
correction clicks, and the evaluation prompts (COCO or detection boxes, their centres, mask centres).

The samplers are SAM 2's training ones from :mod:`samlab.models.sam2.prompts` (box jitter of 10 % of the box side
capped at 20 px, clicks drawn uniformly from a region); this module decides which object gets which prompt and keeps
them in one padded layout, :class:`Prompts`, that segment_anything's prompt encoder takes as is. Coordinates are
``(x, y)`` pixel indices in the model input (the prompt encoder adds the half-pixel offset); COCO boxes (and the
training boxes of :func:`mask_boxes`) are passed in COCO's convention, the far corner one past the last pixel, as
segment_anything's ``SamPredictor`` passes them; point labels are 1 positive, 0 negative, -1 padding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from samlab.models.sam2.prompts import center_error_click, noisy_box_prompt, random_error_click

PromptMode = Literal["box", "point", "mix", "box_center"]
EvalPrompt = Literal["box", "box_center", "mask_center"]
Multimask = Literal["single_click", "never", "always"]
PADDING_LABEL = -1


@dataclass
class PromptConfig:
    """How objects are prompted from their ground-truth masks (plain values, usable from YAML).

    Attributes:
        mode: ``"box"`` (every object a jittered box), ``"point"`` (clicks), ``"mix"`` (box with ``box_prob``,
            else clicks, drawn per object) or ``"box_center"`` (one positive click at the centre of the mask's box,
            as the Detectron2-SAM integration's point prompt).
        box_prob: chance of a box per object in ``"mix"`` mode.
        box_noise: box jitter as a fraction of the box side (SAM: 0.1).
        box_noise_bound: box jitter cap in pixels (SAM: 20).
        max_points: positive clicks per clicked object, uniform in ``[1, max_points]``, uniform inside the mask.
        max_negative_points: negative clicks per clicked object, uniform in ``[0, max_negative_points]``, uniform
            outside the mask.
        num_correction_steps: training rounds after the first prediction, each adding one click drawn from the error
            region (missed object: positive, spill: negative) and feeding the previous low-resolution logits back as
            mask prompt (SAM's interactive training; 0 turns it off).
        eval_mode: prompt in validation, test and prediction: ``"box"`` (the annotation's COCO box, or the
            detection's box with detector prompts), ``"box_center"`` (one positive click at that box's centre) or
            ``"mask_center"`` (one positive click at the pixel of the GT mask farthest from its border, SAM's centre
            click); None follows ``mode`` (``box`` and ``mix``: ``"box"``, ``point``: ``"mask_center"``,
            ``box_center``: ``"box_center"``).
        multimask: when the decoder answers with three masks (the best by predicted IoU is kept in evaluation, the
            one with the lowest loss is trained): ``"single_click"`` (an object whose only prompt is one click:
            SAM's convention), ``"never"`` (one mask for every prompt, as the Detectron2-SAM integration) or
            ``"always"``.
    """

    mode: PromptMode = "box"
    box_prob: float = 0.5
    box_noise: float = 0.1
    box_noise_bound: float = 20.0
    max_points: int = 1
    max_negative_points: int = 0
    num_correction_steps: int = 0
    eval_mode: EvalPrompt | None = None
    multimask: Multimask = "single_click"

    def __post_init__(self) -> None:
        if self.mode not in ("box", "point", "mix", "box_center"):
            raise ValueError(f"PromptConfig.mode must be 'box', 'point', 'mix' or 'box_center', got {self.mode!r}")
        if self.eval_mode not in (None, "box", "box_center", "mask_center"):
            raise ValueError(
                f"PromptConfig.eval_mode must be 'box', 'box_center', 'mask_center' or None, got {self.eval_mode!r}"
            )
        if self.multimask not in ("single_click", "never", "always"):
            raise ValueError(
                f"PromptConfig.multimask must be 'single_click', 'never' or 'always', got {self.multimask!r}"
            )
        if not 0.0 <= self.box_prob <= 1.0:
            raise ValueError(f"PromptConfig.box_prob must be in [0, 1], got {self.box_prob}")
        if self.max_points < 1 or self.max_negative_points < 0 or self.num_correction_steps < 0:
            raise ValueError(
                "PromptConfig needs max_points >= 1, max_negative_points >= 0 and num_correction_steps >= 0, got "
                f"{self.max_points}, {self.max_negative_points}, {self.num_correction_steps}"
            )

    @property
    def evaluation_mode(self) -> EvalPrompt:
        """The prompt kind of evaluation."""
        if self.eval_mode is not None:
            return self.eval_mode
        return {"point": "mask_center", "box_center": "box_center"}.get(self.mode, "box")


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

    def groups(self, multimask: Multimask = "single_click") -> Iterator[tuple[torch.Tensor, bool]]:
        """Split the objects into the groups one decoder call can take: ``(indices [n], multimask)`` for the box
        objects, the single-click objects and the other clicked objects, in that order, non-empty only;
        ``multimask`` (:class:`PromptConfig`) says which groups get three masks."""
        single = self.single_click()
        rows = ((self.has_box, False), (single, multimask != "never"), (~self.has_box & ~single, False))
        for members, three in rows:
            index = torch.nonzero(members).flatten()
            if index.numel():
                yield index, multimask == "always" or (three and multimask == "single_click")

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

    Each object gets one click at the centre of its mask's box (``"box_center"``, :func:`mask_boxes`), or a box
    (``noisy_box_prompt``: every coordinate moves uniformly by up to ``min(box_noise * side, box_noise_bound)``
    pixels) or clicks (``k`` positive clicks uniform inside the mask,
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
    if config.mode == "box_center":
        return box_center_prompts(mask_boxes(masks))
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


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``[N, 4]`` float32 boxes ``x0, y0, x1, y1`` of ``[N, H, W]`` bool masks in COCO's convention (``x1`` one past
    the last column, as pycocotools' ``toBbox``); zeros for an empty mask."""
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    index_y = torch.arange(masks.shape[1], device=masks.device)
    index_x = torch.arange(masks.shape[2], device=masks.device)
    big = max(masks.shape[1], masks.shape[2])
    x0 = torch.where(cols, index_x, big).amin(dim=1)
    x1 = torch.where(cols, index_x + 1, 0).amax(dim=1)
    y0 = torch.where(rows, index_y, big).amin(dim=1)
    y1 = torch.where(rows, index_y + 1, 0).amax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    return boxes * masks.flatten(1).any(dim=1, keepdim=True)


def box_prompts(boxes: torch.Tensor) -> Prompts:
    """Box prompts ``[N, 4]`` xyxy (input coordinates, passed to the prompt encoder as segment_anything's
    ``SamPredictor`` passes a COCO box)."""
    num = boxes.shape[0]
    return Prompts(
        boxes.new_zeros((num, 0, 2)),
        torch.zeros((num, 0), dtype=torch.int32, device=boxes.device),
        boxes.float(),
        torch.ones(num, dtype=torch.bool, device=boxes.device),
    )


def box_center_prompts(boxes: torch.Tensor) -> Prompts:
    """One positive click per box ``[N, 4]`` xyxy, at its centre ``((x0 + x1) / 2, (y0 + y1) / 2)``."""
    num = boxes.shape[0]
    centers = (boxes[:, :2] + boxes[:, 2:]).float()[:, None] / 2
    return Prompts(
        centers,
        torch.ones((num, 1), dtype=torch.int32, device=boxes.device),
        boxes.new_zeros((num, 4)).float(),
        torch.zeros(num, dtype=torch.bool, device=boxes.device),
    )


def evaluation_prompts(mode: EvalPrompt, boxes: torch.Tensor | None, masks: torch.Tensor | None) -> Prompts:
    """Deterministic evaluation prompts of ``N`` objects: their ``boxes`` (``"box"``, ``[N, 4]`` xyxy input
    coordinates: the COCO boxes or detections), the boxes' centres (``"box_center"``), or one positive click at the
    pixel of each of ``masks`` (``[N, H, W]`` bool, not empty) farthest from its border (``"mask_center"``, SAM's
    centre click)."""
    if mode == "mask_center":
        if masks is None:
            raise ValueError("eval prompt 'mask_center' needs the ground-truth masks (not available with detections)")
        coords, labels = center_error_click(masks, None)
        num = masks.shape[0]
        return Prompts(
            coords,
            labels.to(torch.int32),
            coords.new_zeros((num, 4)),
            torch.zeros(num, dtype=torch.bool, device=masks.device),
        )
    if boxes is None:
        raise ValueError(f"eval prompt {mode!r} needs boxes")
    return box_prompts(boxes) if mode == "box" else box_center_prompts(boxes)


def correction_click(
    masks: torch.Tensor, pred: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The next click of interactive training: uniform over the error region of ``pred`` (``[N, H, W]`` bool)
    against ``masks`` (``[N, H, W]`` bool); positive on a missed pixel, negative on a spilled one.

    Returns ``coords [N, 1, 2]`` float32 and ``labels [N, 1]`` int32.
    """
    coords, labels = random_error_click(masks, pred, generator)
    return coords, labels.to(torch.int32)

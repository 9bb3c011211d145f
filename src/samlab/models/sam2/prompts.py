"""Training-time prompt simulation for SAM 2: which frames get which prompt, noisy boxes and error-driven clicks.

Everything here follows the recipe of SAM 2's official training code (``SAM2Train.prepare_prompt_inputs`` and the
samplers of ``sam2.modeling.sam2_utils``) so that a samlab run trains on the same prompt distribution, with two
deliberate fixes for inputs that upstream turns into misleading prompts:

- an empty mask (object absent on a conditioning frame) gives **no box** instead of an inverted box;
- a prediction with no error gives a click on the background (negative), or on the object when it fills the whole
  image (positive), instead of a negative click at pixel ``(0, 0)`` that may lie on the object.

Coordinates are ``(x, y)`` pixel indices (the prompt encoder adds the half-pixel offset), labels follow SAM's point
encoding: 1 positive click, 0 negative click, 2/3 box top-left/bottom-right corner, -1 padding ("not a point").
All functions take masks ``[N, H, W]`` (bool, one row per object) on any device and an optional ``torch.Generator``
(on any device: the draws are made where it lives) so that a run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch

PromptKind = Literal["mask", "box", "click"]
PointSampling = Literal["uniform", "center"]

BOX_TOP_LEFT_LABEL = 2
BOX_BOTTOM_RIGHT_LABEL = 3
PADDING_LABEL = -1


def _check_masks(name: str, masks: torch.Tensor) -> None:
    if masks.dtype != torch.bool or masks.dim() != 3:
        raise ValueError(f"{name} must be a bool tensor [N, H, W], got {masks.dtype} {tuple(masks.shape)}")


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniforms in [0, 1) on ``device``, drawn where the generator lives (a CPU generator may serve GPU masks)."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _tight_boxes(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive ``[x0, y0, x1, y1]`` pixel-index boxes ``[N, 4]`` float32 and ``valid [N]`` (mask not empty).

    SAM's box prompt puts its corners on the first and last mask pixels (not the exclusive end used by
    ``samlab.masks.mask_to_box``), which is what the official sampler feeds the model.
    """
    height, width = masks.shape[1:]
    cols = masks.any(dim=1)  # [N, W]
    rows = masks.any(dim=2)  # [N, H]
    valid = cols.any(dim=1)
    # argmax on a 0/1 tensor returns the first maximum: the first occupied column/row from each side.
    x0 = cols.to(torch.uint8).argmax(dim=1)
    x1 = width - 1 - cols.flip(1).to(torch.uint8).argmax(dim=1)
    y0 = rows.to(torch.uint8).argmax(dim=1)
    y1 = height - 1 - rows.flip(1).to(torch.uint8).argmax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)
    return boxes * valid[:, None], valid


def noisy_box_prompt(
    masks: torch.Tensor,
    noise: float = 0.1,
    noise_bound: float = 20.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A jittered box prompt per mask, as SAM 2's ``sample_box_points``, but no prompt at all for an empty mask.

    Each of the four box coordinates moves by a uniform offset in ``[-d, d]``, ``d = min(noise * side, noise_bound)``
    with ``side`` the box width (x) or height (y) measured between the first and last mask pixels; the corners are
    then clamped to the image ``[0, W-1] x [0, H-1]``. Upstream turns an empty mask into an inverted box
    ``(W, H, -1, -1)`` (clamped to a bogus full-image corner pair) that teaches the model to segment something
    where nothing is; here that row gets both labels -1 and coordinates 0, which SAM's prompt encoder treats as
    padding, and ``valid`` is False so the caller can fall back (e.g. to a mask prompt or skip the object).
    The random draw has the same shape and order as upstream (``[N, 1, 4]`` uniforms), so with a generator in the
    same state the non-empty rows equal upstream's output.

    Args:
        masks: ``[N, H, W]`` bool object masks.
        noise: offset bound as a fraction of the box side (0 gives the tight box).
        noise_bound: offset bound in pixels.
        generator: random source (any device); the global one of ``masks.device`` when None.

    Returns:
        ``coords [N, 2, 2]`` float32 (x, y) of the top-left and bottom-right corners, ``labels [N, 2]`` int32
        (2, 3; -1, -1 for an empty mask) and ``valid [N]`` bool.
    """
    _check_masks("masks", masks)
    num, height, width = masks.shape
    boxes, valid = _tight_boxes(masks)
    if noise > 0.0:
        sides = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1)  # [N, 2] (w, h)
        max_offset = torch.clamp(sides * noise, max=noise_bound).repeat(1, 2)  # [N, 4] (dx, dy, dx, dy)
        uniform = _rand((num, 1, 4), generator, masks.device).view(num, 4)
        boxes = boxes + (2 * uniform - 1) * max_offset
        # Clamped with Python bounds (no host-to-device copy, hence no host sync on a GPU).
        xs, ys = boxes[:, 0::2].clamp(0, width - 1), boxes[:, 1::2].clamp(0, height - 1)
        boxes = torch.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], dim=1)
    labels = torch.full((num, 2), BOX_TOP_LEFT_LABEL, dtype=torch.int32, device=masks.device)
    labels[:, 1] = BOX_BOTTOM_RIGHT_LABEL
    labels = torch.where(valid[:, None], labels, PADDING_LABEL)
    # Empty rows stay at 0: their side and hence their offset bound is 0.
    return boxes.view(num, 2, 2), labels, valid


def _click_regions(gt: torch.Tensor, pred: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a negative and where a positive click may go: ``[N, H, W]`` bool each, never both empty.

    False positives take a negative click, false negatives a positive one. With no error at all the click goes on
    the background (negative), as upstream, or on the object when it covers the whole image (upstream then puts a
    negative click on the object).
    """
    _check_masks("gt", gt)
    if pred is None:
        pred = torch.zeros_like(gt)
    _check_masks("pred", pred)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ in shape")
    false_pos = pred & ~gt
    false_neg = gt & ~pred
    no_error = ~(false_pos | false_neg).flatten(1).any(dim=1)[:, None, None]
    no_background = gt.flatten(1).all(dim=1)[:, None, None]
    negative = false_pos | (no_error & ~gt)
    positive = false_neg | (no_error & no_background)
    return negative, positive


def random_error_click(
    gt: torch.Tensor, pred: torch.Tensor | None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One click per object drawn uniformly from the prediction's error region (SAM 2's training sampler).

    A pixel of ``gt & ~pred`` (missed object) gives a positive click, one of ``pred & ~gt`` (spill) a negative
    click; both regions together are sampled uniformly. ``pred=None`` samples the first click, positive, from the
    GT mask; with no error (or an empty GT and no prediction) the click is a negative one on the background.
    The draw is upstream's (one uniform per pixel and click kind, argmax over the allowed ones), so the same
    generator state gives the same click as ``sample_random_points_from_errors``.

    Args:
        gt: ``[N, H, W]`` bool ground-truth masks.
        pred: ``[N, H, W]`` bool predicted masks (logits > 0), or None for an initial click.
        generator: random source (any device); the global one of ``gt.device`` when None.

    Returns:
        ``coords [N, 1, 2]`` float32 (x, y) pixel indices and ``labels [N, 1]`` int32 (1 positive, 0 negative).
    """
    negative, positive = _click_regions(gt, pred)
    num, height, width = gt.shape
    scores = _rand((num, 1, height, width, 2), generator, gt.device)
    scores = scores * torch.stack([negative, positive], dim=-1)[:, None]
    # Channel-last flattening: index // 2 is the pixel, index % 2 the click kind (0 negative, 1 positive).
    best = scores.view(num, -1).argmax(dim=1)
    pixel = best // 2
    coords = torch.stack([pixel % width, pixel // width], dim=1).to(torch.float32)
    labels = (best % 2).to(torch.int32)
    return coords[:, None], labels[:, None]


def _largest_inner_distance(region: np.ndarray) -> tuple[float, int]:
    """Largest distance to the region border (image border counting as border) and its flat pixel index."""
    padded = np.pad(region.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 0)[1:-1, 1:-1]
    index = int(distance.argmax())
    return float(distance.flat[index]), index


def center_error_click(gt: torch.Tensor, pred: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One click per object at the centre of its largest error region (SAM 2's evaluation sampler, RITM style).

    The centre is the pixel farthest (exact Euclidean distance transform, with the image border counting as a
    region border, upstream's ``padding=True``) from the edge of the false-negative region (positive click) or of
    the false-positive region (negative click), whichever reaches deeper; ties go to the negative click as
    upstream. ``pred=None`` clicks the centre of the GT mask; with no error the click is the centre of the
    background (negative), or of the object when it fills the image.

    Args:
        gt: ``[N, H, W]`` bool ground-truth masks.
        pred: ``[N, H, W]`` bool predicted masks, or None for an initial click.

    Returns:
        ``coords [N, 1, 2]`` float32 (x, y) pixel indices and ``labels [N, 1]`` int32 (1 positive, 0 negative),
        on ``gt.device``.
    """
    negative, positive = _click_regions(gt, pred)
    width = gt.shape[2]
    coords = torch.zeros(gt.shape[0], 1, 2, dtype=torch.float32)
    labels = torch.zeros(gt.shape[0], 1, dtype=torch.int32)
    for i, (neg, pos) in enumerate(zip(negative.cpu().numpy(), positive.cpu().numpy())):
        neg_depth, neg_index = _largest_inner_distance(neg)
        pos_depth, pos_index = _largest_inner_distance(pos)
        is_positive = pos_depth > neg_depth
        index = pos_index if is_positive else neg_index
        coords[i, 0] = torch.tensor([index % width, index // width], dtype=torch.float32)
        labels[i, 0] = int(is_positive)
    return coords.to(gt.device), labels.to(gt.device)


def sample_error_click(
    gt: torch.Tensor,
    pred: torch.Tensor | None,
    method: PointSampling = "uniform",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``random_error_click`` (``method="uniform"``, training) or ``center_error_click`` (``"center"``, evaluation).

    Takes and returns what those two do: ``gt``/``pred`` ``[N, H, W]`` bool, ``coords [N, 1, 2]``,
    ``labels [N, 1]``; the generator is only used by the uniform sampler.
    """
    if method == "uniform":
        return random_error_click(gt, pred, generator)
    if method == "center":
        return center_error_click(gt, pred)
    raise ValueError(f"unknown point sampling method {method!r}: expected 'uniform' or 'center'")


@dataclass
class PromptConfig:
    """Probabilities and counts of SAM 2's training-time prompting; the defaults are the official MOSE recipe.

    The names are ``SAM2Train``'s own, so a value from an official config carries over unchanged.

    Attributes:
        prob_to_use_pt_input_for_train: chance that a clip is prompted with points/boxes instead of GT masks.
        prob_to_use_pt_input_for_eval: the same in evaluation.
        prob_to_use_box_input_for_train: given point input, chance that an initial conditioning frame gets a box
            instead of a click (so box 0.5 * 0.5 = 0.25, click 0.25, mask 0.5 in the MOSE recipe).
        prob_to_use_box_input_for_eval: the same in evaluation.
        prob_to_sample_from_gt_for_train: chance that a correction click is drawn from the GT mask instead of the
            error region (keeps the model from over-fitting to error regions).
        num_frames_to_correct_for_train: frames that receive correction clicks (at most; see ``rand_...``),
            the initial conditioning frames included. Must be >= ``num_init_cond_frames_for_train``.
        num_frames_to_correct_for_eval: the same in evaluation.
        rand_frames_to_correct_for_train: draw the number of corrected frames uniformly in
            ``[num_init_cond_frames, num_frames_to_correct]`` instead of using the maximum.
        rand_frames_to_correct_for_eval: the same in evaluation.
        num_init_cond_frames_for_train: initial conditioning frames (the first frame is always one of them).
        num_init_cond_frames_for_eval: the same in evaluation.
        rand_init_cond_frames_for_train: draw the number of initial conditioning frames uniformly in
            ``[1, num_init_cond_frames]``.
        rand_init_cond_frames_for_eval: the same in evaluation.
        add_all_frames_to_correct_as_cond: a frame that receives correction clicks becomes a conditioning frame.
        num_correction_pt_per_frame: correction clicks added one after another on each corrected frame.
        pt_sampling_for_eval: click sampler in evaluation, ``"center"`` (as the SAM paper) or ``"uniform"``;
            training always samples uniformly.
    """

    prob_to_use_pt_input_for_train: float = 0.5
    prob_to_use_pt_input_for_eval: float = 0.0
    prob_to_use_box_input_for_train: float = 0.5
    prob_to_use_box_input_for_eval: float = 0.0
    prob_to_sample_from_gt_for_train: float = 0.1
    num_frames_to_correct_for_train: int = 2
    num_frames_to_correct_for_eval: int = 1
    rand_frames_to_correct_for_train: bool = True
    rand_frames_to_correct_for_eval: bool = False
    num_init_cond_frames_for_train: int = 2
    num_init_cond_frames_for_eval: int = 1
    rand_init_cond_frames_for_train: bool = True
    rand_init_cond_frames_for_eval: bool = False
    add_all_frames_to_correct_as_cond: bool = True
    num_correction_pt_per_frame: int = 7
    pt_sampling_for_eval: PointSampling = "center"

    def __post_init__(self) -> None:
        for name in (
            "prob_to_use_pt_input_for_train",
            "prob_to_use_pt_input_for_eval",
            "prob_to_use_box_input_for_train",
            "prob_to_use_box_input_for_eval",
            "prob_to_sample_from_gt_for_train",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"PromptConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        for stage in ("train", "eval"):
            num_init = getattr(self, f"num_init_cond_frames_for_{stage}")
            num_correct = getattr(self, f"num_frames_to_correct_for_{stage}")
            if num_init < 1:
                raise ValueError(f"PromptConfig.num_init_cond_frames_for_{stage} must be >= 1, got {num_init}")
            if num_correct < num_init:
                raise ValueError(
                    f"PromptConfig.num_frames_to_correct_for_{stage} ({num_correct}) must be >= "
                    f"num_init_cond_frames_for_{stage} ({num_init}): the initial conditioning frames are corrected"
                )
        if self.num_correction_pt_per_frame < 0:
            raise ValueError(
                f"PromptConfig.num_correction_pt_per_frame must be >= 0, got {self.num_correction_pt_per_frame}"
            )
        if self.pt_sampling_for_eval not in ("uniform", "center"):
            raise ValueError(
                f"PromptConfig.pt_sampling_for_eval must be 'uniform' or 'center', got {self.pt_sampling_for_eval!r}"
            )


@dataclass
class PromptPlan:
    """How one clip is prompted: what ``plan_prompts`` drew, for the SAM 2 module to carry out.

    Attributes:
        num_frames: frames in the clip.
        use_mask: initial conditioning frames get the GT mask as prompt (no correction clicks then); otherwise each
            gets a box (``box_frames``) or a click from the GT mask.
        init_cond_frames: initial conditioning frames, frame 0 first, the others in drawn order (the order they are
            processed in).
        box_frames: the initial conditioning frames that get a noisy box; drawn per frame as upstream, so with
            two such frames one may get a box and the other a click. Empty when ``use_mask``.
        frames_to_add_correction_pt: frames that receive ``num_correction_points`` correction clicks (the initial
            conditioning frames first); empty when ``use_mask``.
        num_correction_points: correction clicks per corrected frame.
        correction_frames_as_cond: a corrected frame's output is stored as conditioning memory.
        point_sampling: click sampler for the initial and correction clicks (``sample_error_click`` method).
        prob_to_sample_from_gt: chance that a correction click ignores the prediction (``pred=None``).
    """

    num_frames: int
    use_mask: bool
    init_cond_frames: list[int]
    box_frames: list[int]
    frames_to_add_correction_pt: list[int]
    num_correction_points: int
    correction_frames_as_cond: bool
    point_sampling: PointSampling
    prob_to_sample_from_gt: float

    def prompt_kind(self, frame: int) -> PromptKind | None:
        """``"mask"``, ``"box"`` or ``"click"`` for an initial conditioning frame, None for any other frame."""
        if frame not in self.init_cond_frames:
            return None
        if self.use_mask:
            return "mask"
        return "box" if frame in self.box_frames else "click"

    @property
    def processing_order(self) -> list[int]:
        """Frame indices in tracking order: the initial conditioning frames, then the others in time order."""
        return self.init_cond_frames + [t for t in range(self.num_frames) if t not in self.init_cond_frames]

    def is_cond_frame(self, frame: int) -> bool:
        """Whether the output of ``frame`` is stored as conditioning memory (else as a regular memory frame)."""
        return frame in self.init_cond_frames or (
            self.correction_frames_as_cond and frame in self.frames_to_add_correction_pt
        )


def plan_prompts(
    num_frames: int,
    config: PromptConfig,
    rng: np.random.Generator | None = None,
    training: bool = True,
) -> PromptPlan:
    """Draw how a clip of ``num_frames`` frames is prompted, as ``SAM2Train.prepare_prompt_inputs`` does.

    Point input is chosen with ``prob_to_use_pt_input`` (else GT masks); the number of initial conditioning frames
    is uniform in ``[1, num_init_cond_frames]`` (with ``rand_init_cond_frames``), frame 0 plus distinct random
    frames; with point input each of them gets a box with ``prob_to_use_box_input`` (else a click), and the number
    of corrected frames is uniform in ``[#init, num_frames_to_correct]`` (with ``rand_frames_to_correct``): the
    initial conditioning frames plus distinct random others. A single-frame clip (an image) always gets point
    input on that frame, as upstream. Unlike upstream, the frame counts are capped at ``num_frames`` so that short
    clips do not fail.

    The plan has its own random source, a NumPy generator as upstream's ``SAM2Train.rng`` (``default_rng(42)``):
    it is the same on every DDP rank, so all ranks prompt their clips alike, while the click and box noise use
    the per-rank torch generator. The draws are upstream's, call by call, so a generator in the same state gives
    the plan ``SAM2Train.prepare_prompt_inputs`` gives.

    Args:
        num_frames: frames in the clip (>= 1).
        config: probabilities and counts.
        rng: the plan's random source; a fresh unseeded one when None.
        training: use the ``*_for_train`` settings (else ``*_for_eval``).

    Returns:
        The ``PromptPlan``.
    """
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got num_frames={num_frames}")
    stage = "train" if training else "eval"
    prob_points = getattr(config, f"prob_to_use_pt_input_for_{stage}")
    prob_box = getattr(config, f"prob_to_use_box_input_for_{stage}")
    num_correct = min(getattr(config, f"num_frames_to_correct_for_{stage}"), num_frames)
    rand_correct = getattr(config, f"rand_frames_to_correct_for_{stage}")
    num_init = min(getattr(config, f"num_init_cond_frames_for_{stage}"), num_frames)
    rand_init = getattr(config, f"rand_init_cond_frames_for_{stage}")
    if num_frames == 1:
        prob_points, num_correct, num_init = 1.0, 1, 1

    rng = rng if rng is not None else np.random.default_rng()
    # The same draws in the same order as upstream: the same generator state gives the same plan.
    use_points = bool(rng.random() < prob_points)
    if rand_init and num_init > 1:
        num_init = int(rng.integers(1, num_init, endpoint=True))
    if use_points and rand_correct and num_correct > num_init:
        num_correct = int(rng.integers(num_init, num_correct, endpoint=True))
    init_cond_frames = [0]
    if num_init > 1:
        init_cond_frames += [int(t) for t in rng.choice(range(1, num_frames), num_init - 1, replace=False)]
    box_frames = [t for t in init_cond_frames if use_points and rng.random() < prob_box]
    frames_to_correct: list[int] = []
    if use_points:
        frames_to_correct = list(init_cond_frames)
        others = [t for t in range(num_frames) if t not in init_cond_frames]
        if num_correct > num_init:
            frames_to_correct += [int(t) for t in rng.choice(others, num_correct - num_init, replace=False)]
    return PromptPlan(
        num_frames=num_frames,
        use_mask=not use_points,
        init_cond_frames=init_cond_frames,
        box_frames=box_frames,
        frames_to_add_correction_pt=frames_to_correct,
        num_correction_points=config.num_correction_pt_per_frame,
        correction_frames_as_cond=config.add_all_frames_to_correct_as_cond,
        point_sampling="uniform" if training else config.pt_sampling_for_eval,
        prob_to_sample_from_gt=config.prob_to_sample_from_gt_for_train if training else 0.0,
    )

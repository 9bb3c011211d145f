"""Video object segmentation scores with numpy only: region similarity J, boundary F-measure F and J&F.

Shared by ``samlab eval vos`` (:mod:`samlab.tools.eval_vos`, which imports no torch) and the torchmetrics metric
:class:`samlab.metrics.vos.JandF` that ``validate`` / ``test`` log.

The numbers follow the official SA-V evaluator (``sav_dataset/utils/sav_benchmark.py`` in facebookresearch/sam2,
itself the DAVIS 2017 measures as implemented by vos-benchmark):

- J of one object on one frame is the IoU of its predicted and ground-truth masks, and 1 when both are empty.
- F is the F-measure of the boundary pixels (``seg2bmap``: a pixel differs from its right, lower or lower-right
  neighbour) matched within a disk of radius ``ceil(0.008 * image diagonal)``; 1 when both boundaries are empty,
  0 when exactly one is.
- An object is scored from the first evaluated frame where it appears in the ground truth *or* the prediction;
  from then on every frame counts (both empty gives J = F = 1). Its J and F are means over those frames.
- Only objects present in the ground truth on some evaluated frame are reported; the global score is the mean over
  all reported objects of all videos, in percent.

Everything here is computed on the union bounding box of the two masks, which gives the same counts as the
official full-frame computation at a fraction of the cost.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from functools import lru_cache

import cv2
import numpy as np

BOUNDARY_TOLERANCE = 0.008
"""Boundary matching radius as a fraction of the image diagonal (DAVIS / SA-V protocol)."""

Box = tuple[int, int, int, int]


def boundary_radius(height: int, width: int) -> int:
    """Radius in pixels within which boundary pixels match: ``ceil(0.008 * sqrt(H² + W²))`` (12 for 720p)."""
    # Same operation order as the official code so that the float rounding (and hence the ceiling) is identical.
    return math.ceil(BOUNDARY_TOLERANCE * math.sqrt(float(height * height + width * width)))


def disk(radius: int) -> np.ndarray:
    """``[2r+1, 2r+1]`` uint8 structuring element with ones where ``dx² + dy² <= r²`` (skimage's ``disk``)."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius * radius).astype(np.uint8)


@lru_cache(maxsize=16)
def _disk_rectangles(radius: int) -> tuple[np.ndarray, ...]:
    """Rectangles whose union is :func:`disk` (one per corner of its staircase outline).

    Dilating by each rectangle (separable, fast in OpenCV) and taking the maximum equals dilating by the disk,
    about twice as fast as OpenCV's generic kernel path.
    """
    half_width_at = {dy: math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)}
    corners = [
        (half_width, dy)
        for dy, half_width in half_width_at.items()
        if dy == radius or half_width_at[dy + 1] < half_width
    ]
    return tuple(np.ones((2 * dy + 1, 2 * half_width + 1), dtype=np.uint8) for half_width, dy in corners)


def dilate_disk(image: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a ``[H, W]`` uint8 image by :func:`disk` ``(radius)``; equal to ``cv2.dilate(image, disk(radius))``.

    Pixels outside the image do not contribute (OpenCV's default border for dilation).
    """
    rectangles = _disk_rectangles(radius)
    out = cv2.dilate(image, rectangles[0])
    for kernel in rectangles[1:]:
        cv2.max(out, cv2.dilate(image, kernel), dst=out)
    return out


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of a ``[H, W]`` bool mask (``seg2bmap`` of the DAVIS toolkit), as ``[H, W]`` bool.

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour; on the last row and
    column the missing neighbours repeat the edge, so a mask covering the whole frame has no boundary.
    """
    height, width = mask.shape
    # Built by hand: np.pad costs more than the rest of this function on small crops.
    padded = np.empty((height + 1, width + 1), dtype=bool)
    padded[:height, :width] = mask
    padded[height, :width] = mask[-1]
    padded[:, width] = padded[:, width - 1]
    return (mask != padded[:-1, 1:]) | (mask != padded[1:, :-1]) | (mask != padded[1:, 1:])


def object_box(mask: np.ndarray) -> Box | None:
    """Inclusive ``(top, bottom, left, right)`` pixel bounds of a ``[H, W]`` bool mask; None when it is empty."""
    flat = mask.reshape(-1)
    # argmax stops at the first True: it finds the top row (or emptiness) without a pass over the whole frame.
    first = int(flat.argmax())
    if not flat[first]:
        return None
    top = first // mask.shape[1]
    cols = np.flatnonzero(mask[top:].any(axis=0))
    left, right = int(cols[0]), int(cols[-1])
    rows = np.flatnonzero(mask[top:, left : right + 1].any(axis=1))
    return top, top + int(rows[-1]), left, right


def _f_measure(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def region_boundary_scores(
    pred: np.ndarray,
    gt: np.ndarray,
    radius: int | None = None,
    boxes: tuple[Box | None, Box | None] | None = None,
) -> tuple[float, float]:
    """J (IoU) and F (boundary F-measure) of one object on one frame, both in ``[0, 1]``.

    ``pred`` and ``gt`` are ``[H, W]`` bool masks. ``radius`` defaults to :func:`boundary_radius` of the frame.
    ``boxes`` are the masks' :func:`object_box` when the caller already has them (saves a pass over the frame).
    Both empty gives ``(1.0, 1.0)``.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction is {pred.shape} but ground truth is {gt.shape}")
    height, width = gt.shape
    radius = boundary_radius(height, width) if radius is None else radius
    pred_box, gt_box = (object_box(pred), object_box(gt)) if boxes is None else boxes
    present = [box for box in (pred_box, gt_box) if box is not None]
    if not present:
        return 1.0, 1.0
    # One pixel above/left of the union box can be a boundary pixel (its lower neighbour is inside); one row/column
    # below/right is needed as neighbour of the last row/column. No boundary pixel lies outside this crop, so the
    # dilation needs no margin either.
    top = max(min(box[0] for box in present) - 1, 0)
    bottom = max(box[1] for box in present) + 2
    left = max(min(box[2] for box in present) - 1, 0)
    right = max(box[3] for box in present) + 2
    pred = pred[top:bottom, left:right]
    gt = gt[top:bottom, left:right]

    j = np.count_nonzero(pred & gt) / np.count_nonzero(pred | gt)

    pred_boundary = boundary_map(pred)
    gt_boundary = boundary_map(gt)
    num_pred = np.count_nonzero(pred_boundary)
    num_gt = np.count_nonzero(gt_boundary)
    if num_pred == 0 or num_gt == 0:
        # The official precision/recall conventions: P = 1 without predicted boundary, R = 1 without GT boundary.
        precision = 1.0 if num_pred == 0 else 0.0
        recall = 1.0 if num_gt == 0 else 0.0
        return float(j), _f_measure(precision, recall)
    gt_dilated = dilate_disk(gt_boundary.view(np.uint8), radius).view(bool)
    pred_dilated = dilate_disk(pred_boundary.view(np.uint8), radius).view(bool)
    precision = np.count_nonzero(pred_boundary & gt_dilated) / num_pred
    recall = np.count_nonzero(gt_boundary & pred_dilated) / num_gt
    return float(j), _f_measure(precision, recall)


class SequenceScores:
    """Per-object J and F accumulated over the evaluated frames of one sequence, with the official protocol.

    Feed frames in order with :meth:`update`; objects are any hashable ids (DAVIS palette index, SA-V folder name).
    """

    def __init__(self) -> None:
        self._j: dict[Hashable, float] = {}
        self._f: dict[Hashable, float] = {}
        self._frames: dict[Hashable, int] = {}
        self._in_gt: set[Hashable] = set()

    def update(self, scores: Mapping[Hashable, tuple[float, float]], in_gt: Iterable[Hashable]) -> None:
        """Add one frame.

        ``scores`` maps every object present in the ground truth or the prediction on this frame to its
        ``(J, F)`` in ``[0, 1]``; ``in_gt`` lists those present in the ground truth. An object seen on an earlier
        frame but absent from both on this one scores ``(1, 1)``.
        """
        for obj in self._frames.keys() - scores.keys():
            self._add(obj, 1.0, 1.0)
        for obj, (j, f) in scores.items():
            self._add(obj, j, f)
        self._in_gt.update(in_gt)

    def _add(self, obj: Hashable, j: float, f: float) -> None:
        self._j[obj] = self._j.get(obj, 0.0) + j
        self._f[obj] = self._f.get(obj, 0.0) + f
        self._frames[obj] = self._frames.get(obj, 0) + 1

    def results(self) -> dict[Hashable, tuple[float, float, int]]:
        """``{object: (mean J, mean F, frames counted)}`` (J and F in ``[0, 1]``) of the objects seen in the GT."""
        return {
            obj: (self._j[obj] / self._frames[obj], self._f[obj] / self._frames[obj], self._frames[obj])
            for obj in self._frames
            if obj in self._in_gt
        }


def video_scores(pred: np.ndarray, gt: np.ndarray, skip_first_last: bool = False) -> dict[int, tuple[float, float]]:
    """Per-object mean J and F (in ``[0, 1]``) of one video.

    ``pred`` and ``gt`` are ``[T, O, H, W]`` bool arrays (object ``o`` of the prediction is object ``o`` of the
    ground truth). ``skip_first_last`` drops the first and last frames (SA-V val/test and DAVIS semi-supervised
    protocol). Returns ``{object index: (J, F)}`` for the objects present in the ground truth on an evaluated frame.
    """
    if pred.shape != gt.shape or gt.ndim != 4:
        raise ValueError(
            f"expected prediction and ground truth of the same [T, O, H, W] shape, got {pred.shape} and {gt.shape}"
        )
    if skip_first_last:
        pred, gt = pred[1:-1], gt[1:-1]
    radius = boundary_radius(gt.shape[2], gt.shape[3])
    sequence = SequenceScores()
    for pred_frame, gt_frame in zip(pred, gt):
        scores = {}
        in_gt = []
        for obj, (pred_mask, gt_mask) in enumerate(zip(pred_frame, gt_frame)):
            boxes = (object_box(pred_mask), object_box(gt_mask))
            if boxes[1] is not None:
                in_gt.append(obj)
            if boxes != (None, None):
                scores[obj] = region_boundary_scores(pred_mask, gt_mask, radius, boxes)
        sequence.update(scores, in_gt)
    return {obj: (j, f) for obj, (j, f, _) in sequence.results().items()}

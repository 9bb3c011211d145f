"""Contour metrics of class-agnostic boundary maps (DirectSAM): effective contour recall, tokens, boundary P/R/F.

Effective contour recall (DirectSAM's definition): the predicted boundary (``probability > threshold``), with a band
of ``tolerance`` pixels along the image border set, is skeletonised; the 4-connected components of the rest are the
*tokens* (the regions the boundary encloses); the outlines of the tokens, dilated by a circular kernel of diameter
``tolerance``, must cover the ground-truth boundary pixels (those outside the border band). Only boundaries that
actually close regions count, so a fragmented prediction scores low however many pixels it marks.

Boundary precision and recall at the tolerance compare the thinned prediction (its skeleton, border band left out)
with the ground truth: precision is the fraction of predicted pixels within the tolerance kernel of a ground-truth
pixel, recall the fraction of ground-truth pixels within the tolerance kernel of a predicted one, F their harmonic
mean. An image whose ground truth is empty outside the border band has no score (DirectSAM skips it).

numpy only: shared by ``samlab eval contour`` (:mod:`samlab.tools.eval_contour`, which imports no torch) and the
torchmetrics metric :class:`samlab.metrics.contour.ContourRecall` that DirectSAM's validation logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import find_objects
from skimage.morphology import skeletonize

# DirectSAM's evaluate.py: tolerance 5 px; its sweep of thresholds.
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
DEFAULT_TOLERANCE = 5
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


@dataclass(frozen=True)
class ContourScores:
    """Scores of one image at one threshold: effective contour recall, token count, boundary precision/recall/F."""

    recall: float
    num_tokens: int
    precision: float
    boundary_recall: float
    f: float


def _band(mask: np.ndarray, width: int, value: bool) -> np.ndarray:
    """A copy of ``mask`` with a band of ``width`` pixels along the border set to ``value``."""
    out = mask.astype(bool, copy=True)
    if width > 0:
        out[:width] = out[-width:] = value
        out[:, :width] = out[:, -width:] = value
    return out


def tokens(boundary: np.ndarray) -> tuple[int, np.ndarray]:
    """Tokens of a boundary map: the 4-connected components of what its skeleton leaves.

    Args:
        boundary: ``[H, W]`` bool predicted boundary.

    Returns:
        ``(num_tokens, labels)``: the number of tokens and the ``[H, W]`` int32 map of token ids ``1..num_tokens``
        (0 on the skeleton).
    """
    skeleton = skeletonize(boundary.astype(bool))
    count, labels = cv2.connectedComponents((~skeleton).astype(np.uint8), connectivity=4)
    return count - 1, labels


def token_outlines(labels: np.ndarray, num_tokens: int) -> np.ndarray:
    """``[H, W]`` bool union of the outlines of the tokens of ``labels``.

    The outline of a token is its dilation by the 3x3 cross minus the erosion of that dilation: the skeleton pixels
    next to the token that also touch something outside its dilation (DirectSAM's effective contour).
    """
    height, width = labels.shape
    out = np.zeros((height, width), dtype=np.uint8)
    for token, box in enumerate(find_objects(labels, max_label=num_tokens), start=1):
        if box is None:
            continue
        # Two pixels around the box hold the dilation and the pixels whose erosion looks at it: the crop gives the
        # same outline as the whole image, at the cost of the token's size.
        y0, x0 = max(box[0].start - 2, 0), max(box[1].start - 2, 0)
        y1, x1 = min(box[0].stop + 2, height), min(box[1].stop + 2, width)
        mask = (labels[y0:y1, x0:x1] == token).astype(np.uint8)
        dilated = cv2.dilate(mask, _CROSS)
        out[y0:y1, x0:x1] |= dilated - cv2.erode(dilated, _CROSS)
    return out.astype(bool)


def tolerance_kernel(tolerance: int) -> np.ndarray:
    """The circular ``[tolerance, tolerance]`` uint8 kernel a boundary is dilated by for matching."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (tolerance, tolerance))


def _dilate(mask: np.ndarray, tolerance: int) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), tolerance_kernel(tolerance)) > 0


def contour_scores(gt: np.ndarray, pred: np.ndarray, tolerance: int = DEFAULT_TOLERANCE) -> ContourScores | None:
    """Scores of one binary predicted boundary against one ground-truth boundary.

    Args:
        gt: ``[H, W]`` bool ground-truth boundary.
        pred: ``[H, W]`` bool predicted boundary (probabilities already thresholded).
        tolerance: border band width and diameter of the matching kernel, in pixels (>= 1).

    Returns:
        :class:`ContourScores`, or None when ``gt`` is empty outside the border band.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in size")
    if tolerance < 1:
        raise ValueError(f"tolerance must be >= 1, got {tolerance}")
    gt = _band(gt, tolerance, False)
    num_gt = int(gt.sum())
    if num_gt == 0:
        return None
    num_tokens, labels = tokens(_band(pred, tolerance, True))
    covered = _dilate(token_outlines(labels, num_tokens), tolerance)
    recall = float(np.logical_and(gt, covered).sum()) / num_gt

    thin = skeletonize(_band(pred, tolerance, False))
    num_pred = int(thin.sum())
    precision = float(np.logical_and(thin, _dilate(gt, tolerance)).sum()) / num_pred if num_pred else 1.0
    boundary_recall = float(np.logical_and(gt, _dilate(thin, tolerance)).sum()) / num_gt
    total = precision + boundary_recall
    f = 2 * precision * boundary_recall / total if total > 0 else 0.0
    return ContourScores(recall, num_tokens, precision, boundary_recall, f)


def threshold_scores(
    gt: np.ndarray,
    probabilities: np.ndarray,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    tolerance: int = DEFAULT_TOLERANCE,
) -> list[ContourScores] | None:
    """:func:`contour_scores` of ``probabilities > t`` (``[H, W]`` float in [0, 1]) for each threshold ``t``;
    None when ``gt`` is empty outside the border band."""
    scores = [contour_scores(gt, probabilities > t, tolerance) for t in thresholds]
    return None if scores[0] is None else scores  # type: ignore[return-value]


SCORE_FIELDS: tuple[str, ...] = ("contour_recall", "num_tokens", "precision", "boundary_recall", "f")
"""The fields of :class:`ContourScores`, in the order of :func:`score_rows`' rows."""


def score_rows(scores: Sequence[ContourScores]) -> np.ndarray:
    """``[len(SCORE_FIELDS), len(scores)]`` float64: the fields of each threshold's scores, one column each."""
    return np.array([[s.recall, s.num_tokens, s.precision, s.boundary_recall, s.f] for s in scores], np.float64).T

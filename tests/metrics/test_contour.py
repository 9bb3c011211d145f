"""Contour metrics: a case worked out by hand, DirectSAM's definition as an oracle, the torchmetrics Metric."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage.morphology import skeletonize

from samlab.metrics.contour import ContourRecall, contour_scores, threshold_scores, token_outlines, tokens


def _line(gap: bool) -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((20, 20), dtype=bool)
    gt[:, 10] = True
    pred = gt.copy()
    if gap:
        pred[5:7, 10] = False
    return gt, pred


def test_closed_line_by_hand():
    gt, pred = _line(gap=False)
    scores = contour_scores(gt, pred, tolerance=1)
    # Border band + the line: two tokens (left, right), plus the four corner pixels that skeletonize drops from
    # the band (single-pixel tokens, as in DirectSAM's code); the line's 18 pixels inside the band outline a token.
    assert scores.num_tokens == 2 + 4
    assert scores.recall == 1.0
    assert (scores.precision, scores.boundary_recall, scores.f) == (1.0, 1.0, 1.0)


def test_dangling_line_by_hand():
    gt, pred = _line(gap=True)
    scores = contour_scores(gt, pred, tolerance=1)
    # The gap joins left and right into one token; only the line's two end pixels (next to the border band,
    # which is no token's neighbour) outline it: recall 2/18. The thinned line still matches 16 of 18 pixels.
    assert scores.num_tokens == 1 + 4
    assert scores.recall == pytest.approx(2 / 18)
    assert scores.precision == 1.0
    assert scores.boundary_recall == pytest.approx(16 / 18)
    assert scores.f == pytest.approx(2 * (16 / 18) / (1 + 16 / 18))


def _reference(gt: np.ndarray, pred: np.ndarray, tolerance: int) -> tuple[int, float]:
    """DirectSAM's effective contour recall written from its definition: whole-image morphology per token."""
    gt, pred = gt.astype(np.uint8), pred.astype(np.uint8)
    gt[:tolerance], gt[-tolerance:], gt[:, :tolerance], gt[:, -tolerance:] = 0, 0, 0, 0
    pred[:tolerance], pred[-tolerance:], pred[:, :tolerance], pred[:, -tolerance:] = 1, 1, 1, 1
    skeleton = skeletonize(pred.astype(bool))
    count, labels = cv2.connectedComponents(1 - skeleton.astype(np.uint8), connectivity=4)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    effective = np.zeros_like(gt)
    for label in range(1, count):
        dilated = cv2.dilate((labels == label).astype(np.uint8), kernel)
        effective[(dilated - cv2.erode(dilated, kernel)) > 0] = 1
    covered = cv2.dilate(effective, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (tolerance, tolerance)))
    return count - 1, float(np.logical_and(gt, covered).sum() / gt.sum())


@pytest.mark.parametrize("seed,tolerance", [(0, 3), (1, 5), (2, 10)])
def test_matches_the_reference_definition(seed, tolerance):
    rng = np.random.default_rng(seed)
    labels = np.zeros((72, 96), dtype=np.int32)
    for i in range(1, 8):
        y, x = rng.integers(0, 60), rng.integers(0, 80)
        labels[y : y + rng.integers(8, 30), x : x + rng.integers(8, 30)] = i
    gt = np.zeros(labels.shape, dtype=bool)
    for i in range(8):
        mask = (labels == i).astype(np.uint8)
        gt |= (cv2.dilate(mask, np.ones((3, 3), np.uint8)) - mask) > 0
    noise = cv2.GaussianBlur(rng.random(labels.shape).astype(np.float32), (5, 5), 0) > 0.55
    pred = (gt & (rng.random(labels.shape) > 0.2)) | noise
    scores = contour_scores(gt, pred, tolerance)
    num_tokens, recall = _reference(gt, pred, tolerance)
    assert scores.num_tokens == num_tokens
    assert scores.recall == pytest.approx(recall)
    assert 0 < scores.recall <= 1


def test_token_outlines_of_two_regions():
    boundary = np.zeros((7, 9), dtype=bool)
    boundary[:, 4] = True
    count, labels = tokens(boundary)
    assert count == 2 and (labels[:, 4] == 0).all() and labels[0, 0] != labels[0, 8]
    # Every pixel of the separating column touches the other token, outside the first one's dilation.
    np.testing.assert_array_equal(token_outlines(labels, count), boundary)
    # A dead-end line inside one token outlines nothing: its pixels touch only that token and the line itself.
    spur = np.zeros((9, 9), dtype=bool)
    spur[2:7, 4] = True
    count, labels = tokens(spur)
    assert count == 1 and not token_outlines(labels, count).any()


def test_empty_ground_truth_is_skipped():
    gt = np.zeros((20, 20), dtype=bool)
    gt[:2] = True  # only in the border band
    assert contour_scores(gt, gt, tolerance=3) is None
    assert threshold_scores(gt, np.zeros((20, 20)), (0.5,), 3) is None


def test_metric_averages_images_and_skips_empty_ground_truth():
    gt_full, pred_full = _line(gap=False)
    gt_gap, pred_gap = _line(gap=True)
    empty = np.zeros((20, 20), dtype=bool)
    metric = ContourRecall(thresholds=(0.5,), tolerance=1)
    probs = torch.tensor(np.stack([pred_full, pred_gap, empty]), dtype=torch.float32) * 0.9
    metric.update(probs, torch.tensor(np.stack([gt_full, gt_gap, empty])))
    result = metric.compute()
    assert result["num_images"] == 2
    assert result["contour_recall@0.5"] == pytest.approx((1 + 2 / 18) / 2)
    assert result["num_tokens@0.5"] == pytest.approx((6 + 5) / 2)
    assert result["precision@0.5"] == pytest.approx(1.0)
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert torch.isnan(ContourRecall().compute()["contour_recall@0.5"])

"""Contour metrics: cases worked out by hand, DirectSAM's own outputs (golden), the torchmetrics Metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

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


GOLDEN = np.load(Path(__file__).resolve().parents[1] / "golden" / "directsam" / "contour_recall.npz")


@pytest.mark.parametrize("a,tolerance", list(enumerate(int(t) for t in GOLDEN["tolerances"])))
def test_recall_and_tokens_equal_directsam_s_outputs(a, tolerance):
    thresholds = [float(t) for t in GOLDEN["thresholds"]]
    for i, (gt, probabilities) in enumerate(zip(GOLDEN["gt"], GOLDEN["probabilities_u8"], strict=True)):
        scores = threshold_scores(gt, probabilities / 255.0, thresholds, tolerance)
        assert [s.num_tokens for s in scores] == GOLDEN["num_tokens"][i, a].tolist()
        np.testing.assert_allclose([s.recall for s in scores], GOLDEN["recall"][i, a], rtol=0, atol=1e-12)


def test_metric_means_equal_directsam_s_table():
    # evaluate.py's defaults (tolerance 5, thresholds 0.1-0.5) are the metric's; its means over the golden cases.
    metric = ContourRecall()
    assert metric.thresholds == tuple(float(t) for t in GOLDEN["thresholds"]) and metric.tolerance == 5
    metric.update(torch.from_numpy(GOLDEN["probabilities_u8"] / 255.0), torch.from_numpy(GOLDEN["gt"]))
    result = metric.compute()
    a = GOLDEN["tolerances"].tolist().index(5)
    for j, t in enumerate(metric.thresholds):
        assert result[f"contour_recall@{t:g}"].item() == pytest.approx(GOLDEN["recall"][:, a, j].mean(), abs=1e-6)
        assert result[f"num_tokens@{t:g}"].item() == pytest.approx(GOLDEN["num_tokens"][:, a, j].mean())


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

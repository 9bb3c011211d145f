"""J, F and J&F: hand-computable cases and a full-frame reference of the official DAVIS/SA-V formulas."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from samlab.metrics.vos import JandF
from samlab.metrics.vos_scores import (
    SequenceScores,
    boundary_map,
    boundary_radius,
    dilate_disk,
    disk,
    object_box,
    region_boundary_scores,
    video_scores,
)


def reference_bmap(seg: np.ndarray) -> np.ndarray:
    """seg2bmap written from its description: compare with right/lower/lower-right, then fix the last row/column."""
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def reference_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """The official per-frame J and F computed on the full frame with OpenCV's generic disk dilation."""
    union = np.count_nonzero(pred | gt)
    j = 1.0 if union == 0 else np.count_nonzero(pred & gt) / union
    kernel = disk(boundary_radius(*gt.shape))
    bp, bg = reference_bmap(pred), reference_bmap(gt)
    n_p, n_g = bp.sum(), bg.sum()
    if n_p == 0 or n_g == 0:
        precision, recall = float(n_p == 0), float(n_g == 0)
    else:
        precision = (bp & cv2.dilate(bg.astype(np.uint8), kernel).astype(bool)).sum() / n_p
        recall = (bg & cv2.dilate(bp.astype(np.uint8), kernel).astype(bool)).sum() / n_g
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return j, f


def square(size: tuple[int, int], top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_boundary_radius_is_ceil_of_0008_diagonal():
    assert boundary_radius(720, 1280) == 12  # 0.008 * 1468.6 = 11.75
    assert boundary_radius(480, 854) == 8  # 7.84
    assert boundary_radius(100, 100) == 2  # 1.13
    assert boundary_radius(10, 10) == 1


def test_disk_matches_skimage_definition():
    expected = np.array(
        [[0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]], dtype=np.uint8
    )
    np.testing.assert_array_equal(disk(2), expected)
    assert disk(0).tolist() == [[1]]
    assert disk(12).sum() == sum(2 * math.isqrt(144 - dy * dy) + 1 for dy in range(-12, 13))


@pytest.mark.parametrize("radius", [1, 2, 5, 8, 12, 17])
def test_dilate_disk_equals_opencv_generic_kernel(radius: int):
    rng = np.random.default_rng(radius)
    image = (rng.random((61, 47)) < 0.01).astype(np.uint8)
    image[0, 0] = image[-1, -1] = image[30, -1] = 1  # points on the border must not wrap or spill
    np.testing.assert_array_equal(dilate_disk(image, radius), cv2.dilate(image, disk(radius)))


def test_boundary_map_of_a_square_by_hand():
    mask = square((5, 5), 1, 1, 2)
    expected = np.array(
        [[1, 1, 1, 0, 0], [1, 0, 1, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=bool
    )
    np.testing.assert_array_equal(boundary_map(mask), expected)


def test_boundary_map_edges_follow_seg2bmap():
    assert not boundary_map(np.ones((6, 7), dtype=bool)).any()  # a full-frame mask has no boundary
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.random((9, 11)) < 0.5
        np.testing.assert_array_equal(boundary_map(mask), reference_bmap(mask))


def test_object_box():
    assert object_box(np.zeros((4, 5), dtype=bool)) is None
    mask = np.zeros((6, 8), dtype=bool)
    mask[2, 6] = mask[4, 1] = True
    assert object_box(mask) == (2, 4, 1, 6)


def test_square_shifted_by_k_pixels_has_exact_j():
    gt = square((100, 100), 40, 40, 20)
    pred = square((100, 100), 40, 44, 20)  # shifted right by 4: overlap 20x16, union 20x24
    j, _ = region_boundary_scores(pred, gt)
    assert j == pytest.approx(320 / 480)


def test_boundary_within_radius_gives_f_one_and_beyond_gives_zero():
    gt = square((100, 100), 40, 40, 20)
    j, f = region_boundary_scores(square((100, 100), 41, 41, 20), gt)  # diagonal shift sqrt(2) <= radius 2
    assert f == 1.0 and j == pytest.approx(361 / 439)
    j, f = region_boundary_scores(square((100, 100), 0, 0, 10), gt)  # disjoint and far apart
    assert (j, f) == (0.0, 0.0)
    # With radius 0 only coinciding boundary pixels match: the shifted square shares parts of two edges.
    _, f = region_boundary_scores(square((100, 100), 40, 44, 20), gt, radius=0)
    assert 0 < f < 1


def test_empty_and_one_sided_frames():
    empty = np.zeros((30, 40), dtype=bool)
    assert region_boundary_scores(empty, empty) == (1.0, 1.0)
    obj = square((30, 40), 5, 5, 8)
    assert region_boundary_scores(obj, empty) == (0.0, 0.0)
    assert region_boundary_scores(empty, obj) == (0.0, 0.0)
    # The official quirk: a full-frame prediction has no boundary, so against an empty GT precision = recall = 1.
    assert region_boundary_scores(np.ones((30, 40), dtype=bool), empty) == (0.0, 1.0)
    with pytest.raises(ValueError, match="prediction is"):
        region_boundary_scores(empty[:, :5], empty)


def test_cropped_scores_equal_full_frame_reference():
    rng = np.random.default_rng(3)
    for height, width in [(40, 64), (33, 29)]:
        for _ in range(8):
            gt = np.zeros((height, width), dtype=np.uint8)
            pred = np.zeros_like(gt)
            cx, cy = rng.integers(0, width), rng.integers(0, height)  # may sit on a border
            cv2.ellipse(gt, (int(cx), int(cy)), (int(rng.integers(2, 15)), int(rng.integers(2, 10))), 0, 0, 360, 1, -1)
            dx, dy = rng.integers(-5, 6, size=2)
            cv2.circle(pred, (int(cx + dx), int(cy + dy)), int(rng.integers(1, 12)), 1, -1)
            pred[rng.random(pred.shape) < 0.01] = 1
            j, f = region_boundary_scores(pred.astype(bool), gt.astype(bool))
            ref_j, ref_f = reference_scores(pred.astype(bool), gt.astype(bool))
            assert j == pytest.approx(ref_j, abs=1e-12) and f == pytest.approx(ref_f, abs=1e-12)


def test_sequence_scores_count_from_first_appearance():
    seq = SequenceScores()
    seq.update({"a": (0.5, 0.25)}, in_gt=["a"])
    seq.update({"b": (0.0, 0.0)}, in_gt=[])  # "b" only predicted; "a" absent from both scores 1
    seq.update({"b": (0.75, 0.5)}, in_gt=["b"])  # "b" enters the GT; "a" still absent
    seq.update({"c": (0.0, 0.0)}, in_gt=[])  # "c" is never in the GT: not reported
    results = seq.results()
    assert set(results) == {"a", "b"}
    assert results["a"] == pytest.approx(((0.5 + 3) / 4, (0.25 + 3) / 4, 4))
    assert results["b"] == pytest.approx(((0 + 0.75 + 1) / 3, (0 + 0.5 + 1) / 3, 3))


def _toy_video() -> tuple[np.ndarray, np.ndarray]:
    """[T=4, O=3, 20, 20]: object 0 perfect, object 1 enters the GT on frame 2 and is missed, 2 only predicted."""
    gt = np.zeros((4, 3, 20, 20), dtype=bool)
    pred = np.zeros_like(gt)
    gt[:, 0, 5:10, 5:10] = pred[:, 0, 5:10, 5:10] = True
    gt[2:, 1, 12:16, 12:16] = True
    pred[1, 2, 0:3, 0:3] = True
    return pred, gt


def test_video_scores_protocol():
    pred, gt = _toy_video()
    assert video_scores(pred, gt) == {0: (1.0, 1.0), 1: (0.0, 0.0)}  # frames 0-1 do not count for object 1
    gt[3, 1] = False  # object 1 leaves the GT on the last frame: empty/empty counts as 1
    assert video_scores(pred, gt) == {0: (1.0, 1.0), 1: (0.5, 0.5)}
    assert video_scores(pred, gt, skip_first_last=True) == {0: (1.0, 1.0), 1: (0.0, 0.0)}
    with pytest.raises(ValueError, match="same"):
        video_scores(pred[:, :2], gt)


def test_jandf_metric_means_over_objects_and_merges_like_ddp():
    pred, gt = _toy_video()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert torch.isnan(JandF().compute()["J"])
    alone = JandF()
    alone.update(torch.from_numpy(pred), torch.from_numpy(gt), "toy")
    first = {k: float(v) for k, v in alone.compute().items()}
    assert first == pytest.approx({"J": 50.0, "F": 50.0, "J&F": 50.0})

    other = JandF()
    shifted = np.zeros_like(gt[:, :1])
    shifted[:, 0, 5:10, 7:12] = True  # object 0 shifted by 2: J = 15/35 on each frame
    other.update(torch.from_numpy(shifted), torch.from_numpy(gt[:, :1]), "shifted")
    j_shifted = 100 * 15 / 35
    assert float(other.compute()["J"]) == pytest.approx(j_shifted)

    metric = JandF()
    metric.update(torch.from_numpy(pred), torch.from_numpy(gt), "toy")
    metric.merge_state(other)  # what the DDP sum-reduction of the states does
    assert int(metric.num_objects) == 3
    assert float(metric.compute()["J"]) == pytest.approx((100 + 0 + j_shifted) / 3)

    with pytest.raises(ValueError, match="video 'bad'"):
        metric.update(torch.zeros(2, 1, 4, 4, dtype=torch.bool), torch.zeros(2, 2, 4, 4, dtype=torch.bool), "bad")

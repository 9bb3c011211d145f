"""Boundary targets: gradient widths by hand, overlap and >255 masks, border band, label maps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from samlab.data.boundaries import (
    boundary_kernel,
    boundary_target,
    label_map_boundary,
    label_map_masks,
    resize_masks,
)


def _square(size: int = 32, lo: int = 10, hi: int = 20) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[lo:hi, lo:hi] = True
    return mask


def test_thickness_3_is_the_cross_gradient_counted_by_hand():
    out = boundary_target(_square()[None], thickness=3, border=False)
    # Kernel 3 is the 3x3 cross: 40 outside pixels (no diagonal corners) + the 36-pixel inner ring.
    assert out.sum() == 40 + 36
    assert out[9, 10] and out[10, 10] and not out[9, 9] and not out[11, 11]


def test_thickness_1_is_the_inner_outline():
    mask = _square()
    out = boundary_target(mask[None], thickness=1, border=False)
    assert out.sum() == 36
    assert not (out & ~mask).any()


@pytest.mark.parametrize("thickness", [3, 5, 9])
def test_thick_gradient_equals_whole_image_gradient(thickness):
    rng = np.random.default_rng(thickness)
    masks = np.zeros((5, 40, 50), dtype=bool)
    for i, (y, x) in enumerate(rng.integers(0, 35, size=(5, 2))):
        masks[i, y : y + 12, x : x + 15] = True  # some touch the image border
    kernel = boundary_kernel(thickness)
    expected = np.zeros((40, 50), dtype=bool)
    for mask in masks.astype(np.uint8):
        expected |= (cv2.dilate(mask, kernel) - cv2.erode(mask, kernel)) > 0
    np.testing.assert_array_equal(boundary_target(masks, thickness, border=False), expected)


def test_thickness_9_row_profile():
    out = boundary_target(_square(40, 15, 25)[None], thickness=9, border=False)
    # Radius 4 on each side of each edge: columns 11..18 and 21..28 on a middle row.
    np.testing.assert_array_equal(np.flatnonzero(out[20]), [*range(11, 19), *range(21, 29)])


def test_overlapping_masks_do_not_wrap_like_a_uint8_sum():
    square = _square()
    masks = np.repeat(square[None], 256, axis=0)
    wrapped = masks.astype(np.uint8).sum(axis=0, dtype=np.uint8)  # DirectSAM's label-map sum: 256 wraps to 0
    assert not wrapped.any()
    np.testing.assert_array_equal(boundary_target(masks, 3, border=False), boundary_target(square[None], 3, False))
    inner = _square(32, 12, 16)
    both = boundary_target(np.stack([square, inner]), 3, border=False)
    np.testing.assert_array_equal(
        both, boundary_target(square[None], 3, False) | boundary_target(inner[None], 3, False)
    )


def test_border_band_and_no_masks():
    out = boundary_target(np.zeros((0, 20, 30), dtype=bool), thickness=3)
    assert out[:3].all() and out[-3:].all() and out[:, :3].all() and out[:, -3:].all()
    assert not out[3:-3, 3:-3].any()
    assert not boundary_target(np.zeros((0, 20, 30), dtype=bool), 3, border=False).any()


def test_label_map_variant_splits_into_masks():
    labels = np.zeros((32, 32), dtype=np.uint8)
    labels[10:20, 10:20] = 1
    labels[10:20, 20:25] = 7
    masks = label_map_masks(labels)
    assert masks.shape == (3, 32, 32) and masks.sum() == 32 * 32
    np.testing.assert_array_equal(label_map_boundary(labels, 3), boundary_target(masks, 3))
    # The edge between the two objects is there though no background touches it.
    assert label_map_boundary(labels, 3, border=False)[15, 19:21].all()


def test_resize_masks_nearest():
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, :2, :2] = True
    out = resize_masks(masks, (8, 8))
    assert out.shape == (2, 8, 8) and out[0, :4, :4].all() and out[0].sum() == 16 and not out[1].any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="thickness"):
        boundary_target(np.zeros((1, 4, 4), dtype=bool), 0)
    with pytest.raises(ValueError, match=r"\[O, H, W\]"):
        boundary_target(np.zeros((4, 4), dtype=bool), 3)

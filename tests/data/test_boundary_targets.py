"""Boundary targets: DirectSAM's golden outputs pixel for pixel, per-mask OR for instance masks, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from samlab.data.boundaries import (
    boundary_kernel,
    boundary_target,
    label_map_boundary,
    label_map_masks,
    label_map_target,
    resize_masks,
)

GOLDEN = np.load(Path(__file__).resolve().parents[1] / "golden" / "directsam" / "boundary_targets.npz")
THICKNESSES = [int(t) for t in GOLDEN["thicknesses"]]


def _square(size: int = 32, lo: int = 10, hi: int = 20) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[lo:hi, lo:hi] = True
    return mask


@pytest.mark.parametrize("case", range(len(GOLDEN["label_maps"])))
@pytest.mark.parametrize("j,thickness", list(enumerate(THICKNESSES)))
def test_label_map_boundary_equals_directsam_pixel_for_pixel(case, j, thickness):
    label_map = GOLDEN["label_maps"][case]
    np.testing.assert_array_equal(label_map_boundary(label_map, thickness), GOLDEN["boundaries"][case, j])
    size = int(GOLDEN["resized_size"])
    np.testing.assert_array_equal(label_map_target(label_map, size, thickness), GOLDEN["resized_boundaries"][case, j])


@pytest.mark.parametrize("case", range(len(GOLDEN["label_maps"])))
@pytest.mark.parametrize("j,thickness", list(enumerate(THICKNESSES)))
def test_non_overlapping_instance_masks_give_directsam_s_map(case, j, thickness):
    # The objects of the label map as separate instance masks (no background mask): the per-mask OR is the same
    # map as DirectSAM's label-map boundary, at the native size and after resizing the masks.
    label_map = GOLDEN["label_maps"][case]
    masks = label_map_masks(label_map)[1:]
    np.testing.assert_array_equal(boundary_target(masks, thickness), GOLDEN["boundaries"][case, j])
    size = int(GOLDEN["resized_size"])
    resized = boundary_target(resize_masks(masks, (size, size)), thickness)
    np.testing.assert_array_equal(resized, GOLDEN["resized_boundaries"][case, j])


def test_kernels_are_squares_up_to_3_then_circles():
    assert boundary_kernel(2).tolist() == [[1, 1], [1, 1]] and boundary_kernel(3).sum() == 9
    five = boundary_kernel(5)
    # OpenCV's filled circle of radius 2: a 13-pixel diamond; radius 4: 49 pixels, one pixel at each tip.
    assert five.sum() == 13 and five[0].tolist() == [0, 0, 1, 0, 0] and five[2].all()
    nine = boundary_kernel(9)
    assert nine[0].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0] and nine[4].all() and nine.sum() == 49


def test_thickness_9_row_profile():
    out = boundary_target(_square(40, 15, 25)[None], thickness=9, border=False)
    # Radius 4 on each side of each edge: columns 11..18 and 21..28 on a middle row.
    np.testing.assert_array_equal(np.flatnonzero(out[20]), [*range(11, 19), *range(21, 29)])


def test_overlapping_masks_keep_their_outlines_unlike_a_uint8_sum():
    square = _square()
    masks = np.repeat(square[None], 256, axis=0)
    wrapped = masks.astype(np.uint8).sum(axis=0, dtype=np.uint8)  # DirectSAM's SA-1B label-map sum: 256 wraps to 0
    assert not wrapped.any() and not label_map_boundary(wrapped, 3, border=False).any()
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


def test_label_map_target_keeps_64_bit_ids_apart():
    labels = np.zeros((20, 20), dtype=np.int64)
    labels[:, 10:] = 2**40  # narrowed to int32 this would be 0: one region, no boundary
    out = label_map_target(labels, 20, 2)
    assert out[10, 10]  # kernel 2 is anchored at its lower-right pixel: the line lies on the right of the edge
    np.testing.assert_array_equal(out, label_map_boundary((labels > 0).astype(np.uint8), 2))


def test_resize_masks_nearest():
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, :2, :2] = True
    out = resize_masks(masks, (8, 8))
    assert out.shape == (2, 8, 8) and out[0, :4, :4].all() and out[0].sum() == 16 and not out[1].any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="thickness must be >= 2"):
        boundary_target(np.zeros((1, 4, 4), dtype=bool), 1)
    with pytest.raises(ValueError, match=r"\[O, H, W\]"):
        boundary_target(np.zeros((4, 4), dtype=bool), 3)
    with pytest.raises(ValueError, match=r"\[H, W\] label map"):
        label_map_target(np.zeros((1, 4, 4), dtype=np.uint8), 8)

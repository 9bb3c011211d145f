import numpy as np
import pytest
from pycocotools import mask as mask_utils

from samlab.masks import (
    decode_rle,
    decode_segmentation,
    encode_rle,
    mask_iou,
    mask_to_box,
    masks_to_boxes,
    rle_area,
    rle_is_empty,
    xywh_to_xyxy,
)


def _blob(h=20, w=30):
    mask = np.zeros((h, w), dtype=bool)
    mask[3:9, 5:17] = True
    mask[12, 25] = True
    return mask


def test_rle_round_trip_and_area():
    mask = _blob()
    rle = encode_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [20, 30]
    np.testing.assert_array_equal(decode_rle(rle), mask)
    assert rle_area(rle) == mask.sum() == 73


def test_uncompressed_rle_decodes():
    mask = _blob()
    # Column-major run lengths, as COCO's iscrowd annotations store them.
    flat = mask.flatten(order="F").astype(np.uint8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    rle = {"size": [20, 30], "counts": counts}
    np.testing.assert_array_equal(decode_rle(rle), mask)
    assert rle_area(rle) == 73
    assert not rle_is_empty(rle)


def test_empty_rle_detection():
    assert rle_is_empty(None)
    assert rle_is_empty(encode_rle(np.zeros((4, 5), bool)))
    assert rle_is_empty({"size": [4, 5], "counts": [20]})
    assert not rle_is_empty(encode_rle(_blob()))


def test_polygon_segmentation_matches_pycocotools():
    poly = [[2.0, 2.0, 12.0, 2.0, 12.0, 8.0, 2.0, 8.0]]
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, 10, 15))).astype(bool)
    got = decode_segmentation(poly, 10, 15)
    np.testing.assert_array_equal(got, expected)
    assert got.sum() == 60
    assert decode_segmentation([[1.0, 1.0, 2.0, 2.0]], 10, 15).sum() == 0  # degenerate polygon


def test_boxes():
    mask = _blob()
    np.testing.assert_array_equal(mask_to_box(mask), [5, 3, 26, 13])
    single = np.zeros((10, 10), bool)
    single[5, 3] = True
    np.testing.assert_array_equal(mask_to_box(single), [3, 5, 4, 6])
    boxes = masks_to_boxes(np.stack([single, np.zeros_like(single)]))
    np.testing.assert_array_equal(boxes, [[3, 5, 4, 6], [0, 0, 0, 0]])
    assert masks_to_boxes(np.zeros((0, 4, 4), bool)).shape == (0, 4)
    np.testing.assert_array_equal(xywh_to_xyxy([1, 2, 3, 4]), [1, 2, 4, 6])
    with pytest.raises(ValueError):
        encode_rle(np.zeros((2, 3, 4)))


def test_mask_iou():
    a = np.zeros((4, 5), bool)
    b = np.zeros((4, 5), bool)
    assert mask_iou(a, b) == 1.0
    a[0, :4] = True  # 4 pixels
    b[0, 2:] = True  # 3 pixels, 2 shared
    assert mask_iou(a, b) == pytest.approx(2 / 5)

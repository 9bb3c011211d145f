import cv2
import numpy as np
import pytest
from PIL import Image

from samlab.data.formats.base import (
    BinaryPNGMasks,
    LabelMapMasks,
    RLEMasks,
    SegmentationMasks,
    image_size,
    read_image,
    read_label_png,
)
from samlab.errors import DataError
from samlab.masks import encode_rle


def _jpeg(path, h=12, w=16):
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = 200  # red in RGB
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def test_read_image_rgb_and_errors(tmp_path):
    path = _jpeg(tmp_path / "a.jpg")
    image = read_image(path)
    assert image.shape == (12, 16, 3) and image.dtype == np.uint8
    assert abs(int(image[..., 0].mean()) - 200) < 3 and image[..., 2].mean() < 5
    assert image_size(path) == (12, 16)
    with pytest.raises(DataError, match=r"missing\.jpg: frame file is missing"):
        read_image(tmp_path / "missing.jpg")
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match=r"t\.jpg: truncated JPEG"):
        read_image(truncated)
    garbage = tmp_path / "g.png"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"g\.png: not a decodable image"):
        read_image(garbage)
    empty = tmp_path / "e.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="file is empty"):
        read_image(empty)


def test_read_label_png_palette_and_grey(tmp_path):
    labels = np.zeros((5, 6), np.uint8)
    labels[1:3, 2:4] = 2
    labels[4, 5] = 255
    palette = Image.fromarray(labels, mode="P")
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [255] * (256 * 3 - 9))
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "p.png"), labels)
    Image.fromarray(labels * 0 + 7).save(tmp_path / "l.png")
    assert (read_label_png(tmp_path / "l.png") == 7).all()
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match=r"bad\.png: cannot decode annotation PNG"):
        read_label_png(tmp_path / "bad.png")
    with pytest.raises(DataError, match="annotation PNG is missing"):
        read_label_png(tmp_path / "none.png")


def test_label_map_masks():
    labels = np.zeros((4, 5), np.uint8)
    labels[0, :2] = 3
    labels[2, 2] = 1
    labels[3, 4] = 255
    masks = LabelMapMasks(labels, "x.png")
    assert masks.ids() == [1, 3] and masks.size == (4, 5)
    decoded = masks.decode([3, 2, 1])
    assert decoded.shape == (3, 4, 5)
    assert decoded[0].sum() == 2 and decoded[1].sum() == 0 and decoded[2].sum() == 1


def test_rle_masks_lazy_and_size_check():
    mask = np.zeros((6, 7), bool)
    mask[1:3, 1:4] = True
    rles = {4: encode_rle(mask), 5: encode_rle(np.zeros((6, 7), bool)), 6: {"size": [6, 7], "counts": "corrupt!"}}
    masks = RLEMasks(rles, (6, 7), "v.json")
    np.testing.assert_array_equal(masks.decode([4])[0], mask)  # the corrupt RLE of object 6 is never decoded
    assert masks.decode([5]).sum() == 0
    with pytest.raises(DataError, match=r"v\.json: RLE of object 6 is corrupt"):
        masks.decode([6])
    wrong = RLEMasks({1: encode_rle(np.ones((3, 3), bool))}, (6, 7), "w.json")
    with pytest.raises(DataError, match=r"w\.json: mask of object 1 is 3x3 \(WxH\) but its frame is 7x6"):
        wrong.decode([1])


def test_segmentation_masks_polygon_and_rle():
    poly = [[1.0, 1.0, 5.0, 1.0, 5.0, 4.0, 1.0, 4.0]]
    rle = encode_rle(np.eye(6, 8, dtype=bool))
    masks = SegmentationMasks({10: poly, 11: rle, 12: [[0.0, 0.0, 0.0, 0.0]]}, (6, 8), "ann.json")
    assert masks.ids() == [10, 11]  # the degenerate polygon gives no object
    assert masks.decode([10])[0].sum() == 12
    bad = SegmentationMasks({1: encode_rle(np.ones((2, 2), bool))}, (6, 8), "ann.json")
    with pytest.raises(DataError, match=r"ann\.json: annotation 1: RLE size \[2, 2\] differs"):
        bad.decode([1])


def test_binary_png_masks(tmp_path):
    mask = np.zeros((5, 6), np.uint8)
    mask[2:4, 1:3] = 255
    Image.fromarray(mask).save(tmp_path / "000.png")
    Image.fromarray(np.zeros((5, 6), np.uint8)).save(tmp_path / "001.png")
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "002.png")
    masks = BinaryPNGMasks({0: tmp_path / "000.png", 1: tmp_path / "001.png"}, None, str(tmp_path))
    assert masks.size == (5, 6) and masks.ids() == [0]
    assert masks.decode([0, 1, 7]).sum(axis=(1, 2)).tolist() == [4, 0, 0]
    wrong = BinaryPNGMasks({2: tmp_path / "002.png"}, (5, 6), str(tmp_path))
    with pytest.raises(DataError, match=r"002\.png: mask is 6x4"):
        wrong.decode([2])

"""MASA view pairs: matched ids are the same object, lost instances are dropped, seeding, batches, the data module."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from samlab.data.formats.coco import COCOReader
from samlab.data.pairs import MASAPairDataModule, PairAugment, PairDataset, collate_pairs, warp_view
from samlab.errors import DataError
from samlab.masks import encode_rle, masks_to_boxes

# Solid instance colours, far apart so that blending at the borders cannot be mistaken for another instance.
COLOURS = [(230, 30, 30), (30, 230, 30), (30, 30, 230), (230, 230, 30), (30, 230, 230), (230, 30, 230)]


def _write_coco(root, images=2, size=(60, 80)):
    """Images with 6 disjoint solid-colour rectangles each on black; annotation ids 10 * image + k."""
    height, width = size
    records, annotations = [], []
    (root / "images").mkdir(parents=True)
    for i in range(images):
        image = np.zeros((height, width, 3), dtype=np.uint8)
        for k, colour in enumerate(COLOURS):
            mask = np.zeros((height, width), dtype=bool)
            x0, y0 = 4 + (k % 3) * 26, 6 + (k // 3) * 28
            mask[y0 : y0 + 18, x0 : x0 + 20] = True
            image[mask] = colour
            annotations.append(
                {
                    "id": 10 * (i + 1) + k,
                    "image_id": i + 1,
                    "category_id": 1,
                    "segmentation": encode_rle(mask),
                    "area": int(mask.sum()),
                    "bbox": [x0, y0, 20, 18],
                    "iscrowd": 0,
                }
            )
        cv2.imwrite(str(root / "images" / f"im{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        records.append({"id": i + 1, "file_name": f"im{i}.png", "width": width, "height": height})
    ann_file = root / "instances.json"
    ann_file.write_text(
        json.dumps({"images": records, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]})
    )
    return ann_file


def _colour_of(view, row):
    """The median colour inside the eroded mask of instance ``row`` (away from interpolated borders)."""
    inner = cv2.erode(view.masks[row].astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    if not inner.any():
        return None
    return np.median(view.image[inner], axis=0)


def test_matched_ids_are_the_same_object_in_both_views(tmp_path):
    reader = COCOReader(_write_coco(tmp_path), tmp_path / "images")
    augment = PairAugment(hsv_delta=(0, 0, 0), mixup_prob=0.0, rotate=15.0)
    dataset = PairDataset(reader, 64, augment=augment, return_masks=True, min_area=1)
    checked = 0
    for index in range(len(dataset)):
        for epoch in range(4):
            sample = dataset[(index, epoch, 0)]
            for view in (sample.key, sample.ref):
                np.testing.assert_array_equal(view.boxes, masks_to_boxes(view.masks).astype(np.float32))
                for row, instance in enumerate(view.instance_ids):
                    colour = _colour_of(view, row)
                    if colour is not None:
                        expected = COLOURS[int(instance) % 10]
                        assert np.abs(colour - expected).max() <= 2, (instance, colour)
                        checked += 1
    assert checked > 50


class _ShiftRight(PairAugment):
    """Moves the image right by half its width (no randomness): the right-hand instances leave the view."""

    def matrix(self, height, width, size, rng):
        return np.array([[1.0, 0.0, width / 2], [0.0, 1.0, 0.0]])


def test_instances_that_leave_a_view_are_dropped(tmp_path):
    reader = COCOReader(_write_coco(tmp_path, images=1), tmp_path / "images")
    augment = _ShiftRight(hsv_delta=(0, 0, 0), mixup_prob=0.0)
    sample = PairDataset(reader, 80, augment=augment, return_masks=True)[0]
    # Columns at x = 4, 30, 56 (width 20) shift by 40 px: the first stays whole, the second is cut at the 80 px
    # border (10 px left), the third is gone.
    assert sample.key.instance_ids.tolist() == [10, 11, 13, 14]
    assert sample.key.masks.sum(axis=(1, 2)).tolist() == [360, 180, 360, 180]
    np.testing.assert_array_equal(sample.key.boxes[:2], [[44, 6, 64, 24], [70, 6, 80, 24]])
    # Instances shrunk below min_area are dropped as well.
    shrunk = PairDataset(reader, 80, augment=augment, min_area=200)[0]
    assert shrunk.key.instance_ids.tolist() == shrunk.ref.instance_ids.tolist() == [10, 13]


def test_warp_view_keeps_masks_binary_and_aligned():
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    masks = np.zeros((1, 10, 10), dtype=bool)
    masks[0, 2:5, 3:7] = True
    image[masks[0]] = 200
    warped, out = warp_view(image, masks, np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), 20)
    assert out.dtype == bool and out.shape == (1, 20, 20)
    np.testing.assert_array_equal(masks_to_boxes(out)[0], [6, 4, 14, 10])
    assert out.sum() == 6 * 8  # exactly twice the rows and columns
    assert (warped[5:9, 7:13] == 200).all() and (warped[14:18, 14:18] == 0).all()


def test_mixup_partner_ids_are_negative_and_shared_by_both_views(tmp_path):
    reader = COCOReader(_write_coco(tmp_path), tmp_path / "images")
    augment = PairAugment(mixup_prob=1.0, hsv_delta=(0, 0, 0))
    sample = PairDataset(reader, 64, augment=augment)[0]
    for view in (sample.key, sample.ref):
        own = view.instance_ids[view.instance_ids >= 0]
        partner = view.instance_ids[view.instance_ids < 0]
        assert set(own.tolist()) <= set(range(10, 16)) and len(partner) > 0
    # Two images: both views take the other image as partner, so its objects carry the same ids in both.
    key_partner = set(sample.key.instance_ids[sample.key.instance_ids < 0].tolist())
    ref_partner = set(sample.ref.instance_ids[sample.ref.instance_ids < 0].tolist())
    assert key_partner & ref_partner and len(key_partner | ref_partner) <= 6


def test_samples_are_seeded(tmp_path):
    reader = COCOReader(_write_coco(tmp_path), tmp_path / "images")
    first = PairDataset(reader, 64, augment=PairAugment(), seed=3)[(1, 2, 0)]
    again = PairDataset(reader, 64, augment=PairAugment(), seed=3)[(1, 2, 0)]
    other_epoch = PairDataset(reader, 64, augment=PairAugment(), seed=3)[(1, 3, 0)]
    np.testing.assert_array_equal(first.key.image, again.key.image)
    np.testing.assert_array_equal(first.ref.boxes, again.ref.boxes)
    assert not np.array_equal(first.key.image, other_epoch.key.image)
    fixed = PairDataset(reader, 64, augment=PairAugment(), seed=3, fixed=True)
    np.testing.assert_array_equal(fixed[(1, 0, 0)].key.image, fixed[(1, 5, 1)].key.image)


def test_image_without_instances_raises_or_is_skipped(tmp_path):
    ann_file = _write_coco(tmp_path)
    data = json.loads(ann_file.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 1]
    ann_file.write_text(json.dumps(data))
    reader = COCOReader(ann_file, tmp_path / "images")
    with pytest.raises(DataError, match=r"instances\.json: image .im0. has no instance"):
        PairDataset(reader, 64)[0]
    sample = PairDataset(reader, 64, skip_bad_samples=True)[0]
    assert sample.skipped >= 1 and sample.name == "im1"


def test_collate_and_data_module(tmp_path, sa1b_root):
    reader = COCOReader(_write_coco(tmp_path), tmp_path / "images")
    dataset = PairDataset(reader, 64, augment=PairAugment())
    batch = collate_pairs([dataset[0], dataset[1]])
    assert batch.key_images.shape == (2, 3, 64, 64) and batch.key_images.dtype == torch.uint8
    assert [len(b) for b in batch.key_boxes] == [len(i) for i in batch.key_ids]
    assert batch.names == ["im0", "im1"]

    module = MASAPairDataModule(image_size=32, sa1b_root=str(sa1b_root), val_sa1b_root=str(sa1b_root), batch_size=2)
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch.ref_images.shape == (2, 3, 32, 32)
    normalised = module.on_after_batch_transfer(batch, 0)
    assert normalised.key_images.dtype == torch.float32
    val = module.dataset("val")
    assert val.fixed and val.augment.mixup_prob == 0.0
    with pytest.raises(ValueError, match="not both"):
        MASAPairDataModule(ann_file="a.json", sa1b_root="b").reader("train")

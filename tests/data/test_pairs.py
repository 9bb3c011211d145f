"""MASA view pairs: matched ids are the same object, lost instances are dropped, the augmentation's parameter
distributions (against MASA's own transforms where they run outside MASA, else their documented distributions),
seeding, sampling, batches, the data module."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from samlab.data.formats.coco import COCOReader
from samlab.data.pairs import (
    MASAPairDataModule,
    PairAugment,
    PairDataset,
    ViewParams,
    collate_pairs,
    fit_params,
    render_view,
    warp_view,
)
from samlab.errors import DataError
from samlab.masks import encode_rle, masks_to_boxes

GOLDEN = Path(__file__).parent / "golden" / "masa"
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

    def draw(self, image_hw, partner_hw, size, rng):
        matrix = np.array([[1.0, 0.0, image_hw[1] / 2], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        return ViewParams(matrix, None, (0, 0, size, size), np.zeros(3, dtype=np.int16))


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


def test_mixup_partner_is_the_same_image_in_both_views(tmp_path):
    reader = COCOReader(_write_coco(tmp_path), tmp_path / "images")
    augment = PairAugment(mixup_prob=1.0, hsv_delta=(0, 0, 0), resize_range=(1.0, 1.0), affine_scale=(1.0, 1.0))
    shared = 0
    for epoch in range(6):
        sample = PairDataset(reader, 64, augment=augment)[(0, epoch, 0)]
        partners = []
        for view in (sample.key, sample.ref):
            own = view.instance_ids[view.instance_ids >= 0]
            partner = view.instance_ids[view.instance_ids < 0]
            assert set(own.tolist()) <= set(range(10, 16)) and set(partner.tolist()) <= set(range(-6, 0))
            partners.append(set(partner.tolist()))
        # The same partner image in both views: its objects carry the same ids in both, so they are positives.
        shared += len(partners[0] & partners[1])
    assert shared > 0


def test_render_view_blends_jitters_and_pads_as_the_reference():
    image = np.full((20, 30, 3), 200, dtype=np.uint8)
    partner = np.full((10, 10, 3), 0, dtype=np.uint8)
    masks = np.ones((1, 20, 30), dtype=bool)
    params = ViewParams(np.eye(3), np.eye(3), (0, 0, 30, 20), np.zeros(3, dtype=np.int16))
    out, out_masks = render_view(image, masks, params, 32, (partner, np.ones((1, 10, 10), dtype=bool)))
    assert (out[:10, :10] == 100).all()  # 0.5 * 200 + 0.5 * 0
    assert (out[12:20, 12:30] == 157).all()  # 0.5 * 200 + 0.5 * 114 (the partner's grey border), truncated
    assert (out[20:] == 114).all() and (out[:, 30:] == 114).all()  # padding stays grey
    assert out_masks.shape == (2, 32, 32) and out_masks[0].sum() == 600 and out_masks[1].sum() == 100
    # Value gain on a grey image: +20 on V, nothing on H and S; padding is not jittered (it is added after).
    params = ViewParams(np.eye(3), None, (0, 0, 30, 20), np.array([0, 0, 20], dtype=np.int16))
    out, _ = render_view(image, masks, params, 32)
    assert (out[:20, :30] == 220).all() and (out[20:] == 114).all()
    # No augmentation: fitted into the square at the top-left corner, as MASA's test pipeline.
    fit = fit_params((20, 30), 60)
    np.testing.assert_allclose(fit.image_matrix[:2], [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    assert fit.frame == (0, 0, 60, 40)


def _quantiles_match(ours, golden, quantiles, tolerance):
    np.testing.assert_allclose(np.quantile(ours, quantiles), golden, atol=tolerance)


def test_random_affine_distribution_matches_masa():
    """20,000 draws of our affine against 20,000 of MASA's ``SeqRandomAffine`` (golden quantiles, README there)."""
    golden = json.loads((GOLDEN / "random_affine.json").read_text())
    rng = np.random.default_rng(0)
    augment = PairAugment()
    mats = np.stack([augment.affine(golden["height"], golden["width"], rng) for _ in range(golden["draws"])])
    np.testing.assert_array_equal(mats[:, 2], np.tile([0.0, 0.0, 1.0], (len(mats), 1)))
    for name, expected in golden["entries"].items():
        i, j = int(name[1]), int(name[2])
        # Sampling error of a quantile of 20,000 draws: well under 2 % of the spread (translations: pixels).
        tolerance = 2.5 if j == 2 else 0.012
        _quantiles_match(mats[:, i, j], expected, golden["quantiles"], tolerance)
        assert mats[:, i, j].std() == pytest.approx(golden["std"][name], rel=0.03)


def test_mixup_geometry_distribution_matches_masa():
    """Where MASA's ``SeqMixUp`` puts a partner's whole-image box in the frame: our matrices against its draws."""
    golden = json.loads((GOLDEN / "mixup_partner_box.json").read_text())
    rng = np.random.default_rng(0)
    augment = PairAugment()
    (ph, pw), frame = golden["partner_hw"], tuple(golden["frame_hw"])
    corners = []
    for _ in range(golden["draws"]):
        matrix = augment.mixup((ph, pw), frame, golden["size"], rng)
        xs, ys = (matrix[:2] @ np.array([[0.0, pw], [0.0, ph], [1.0, 1.0]])).round(6)
        corners.append([xs.min(), ys.min(), xs.max(), ys.max()])
    corners = np.array(corners)
    for k, name in enumerate(["x1", "y1", "x2", "y2"]):
        # Two samples of 5,000 draws: their tail quantiles differ by up to ~4 % of the spread.
        spread = golden["box"][name][-1] - golden["box"][name][0]
        _quantiles_match(corners[:, k], golden["box"][name], golden["quantiles"], 0.06 * spread)
    assert (corners[:, 2] - corners[:, 0]).mean() == pytest.approx(golden["width_mean"], rel=0.01)


def test_hsv_resize_crop_flip_follow_the_documented_distributions():
    """``YOLOXHSVRandomAug`` (gains uniform in +-delta, each channel on with probability 1/2, truncated),
    ``RandomResize`` (the frame's long side to ``size * U(0.1, 2.0)``), ``RandomCrop`` (uniform offsets) and
    ``RandomFlip`` (probability 1/2), read from their mmdet / mmcv definitions."""
    rng = np.random.default_rng(1)
    augment = PairAugment()
    gains = np.stack([augment.gains(rng) for _ in range(20000)])
    assert gains.dtype == np.int16
    assert (np.abs(gains) <= np.array([5, 30, 30])).all()
    off = (gains == 0).mean(axis=0)  # off half the time, plus the draws truncated to 0
    np.testing.assert_allclose(off, [0.5 + 0.5 * 0.2, 0.5 + 0.5 / 30, 0.5 + 0.5 / 30], atol=0.015)
    assert np.abs(gains[:, 1][gains[:, 1] != 0]).mean() == pytest.approx(15.0, abs=0.4)  # int(U(0, 30)) >= 1

    size, frame = 1024, (600, 800)
    scales, heights, offsets, flips, frames = [], [], [], [], []
    for _ in range(20000):
        matrix, box = augment.output(frame, size, rng)
        flipped = matrix[0, 0] < 0
        scales.append(abs(matrix[0, 0]))
        heights.append(matrix[1, 1] * frame[0])
        flips.append(flipped)
        offsets.append(-matrix[1, 2])
        frames.append(box)
    ratio = np.array(scales) * frame[1] / size  # long side / size
    assert ratio.min() >= 0.099 and ratio.max() <= 2.001
    np.testing.assert_allclose(np.quantile(ratio, [0.25, 0.5, 0.75]), [0.575, 1.05, 1.525], atol=0.02)
    assert np.mean(flips) == pytest.approx(0.5, abs=0.015)
    frames = np.array(frames)
    assert (frames[:, 2] <= size).all() and (frames[:, 3] <= size).all()
    # Crop offsets: 0 unless the resized frame exceeds the square, then uniform over the excess.
    excess = np.maximum(np.round(heights) - size, 0)
    offsets = np.array(offsets)
    assert (offsets[excess == 0] == 0).all() and (offsets <= excess + 1e-6).all()
    big = excess > 100
    assert (offsets[big] / excess[big]).mean() == pytest.approx(0.5, abs=0.03)


def test_samples_are_seeded(tmp_path):
    reader = COCOReader(_write_coco(tmp_path), tmp_path / "images")
    first = PairDataset(reader, 64, augment=PairAugment(resize_range=(0.8, 1.2)), seed=3)[(1, 2, 0)]
    again = PairDataset(reader, 64, augment=PairAugment(resize_range=(0.8, 1.2)), seed=3)[(1, 2, 0)]
    other_epoch = PairDataset(reader, 64, augment=PairAugment(resize_range=(0.8, 1.2)), seed=3)[(1, 3, 0)]
    np.testing.assert_array_equal(first.key.image, again.key.image)
    np.testing.assert_array_equal(first.ref.boxes, again.ref.boxes)
    assert not np.array_equal(first.key.image, other_epoch.key.image)
    fixed = PairDataset(reader, 64, augment=PairAugment(resize_range=(0.8, 1.2)), seed=3, fixed=True)
    np.testing.assert_array_equal(fixed[(1, 0, 0)].key.image, fixed[(1, 5, 1)].key.image)


def test_image_without_instances_raises_or_is_skipped(tmp_path):
    ann_file = _write_coco(tmp_path)
    data = json.loads(ann_file.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 1]
    ann_file.write_text(json.dumps(data))
    reader = COCOReader(ann_file, tmp_path / "images")
    with pytest.raises(DataError, match=r"instances\.json: image .im0. has no instance") as info:
        PairDataset(reader, 64)[0]
    assert "skip_bad_samples: true" in str(info.value)
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
    assert module.dataset("train").max_instances is None  # no cap unless the YAML sets one, as the reference
    with pytest.raises(ValueError, match="not both"):
        MASAPairDataModule(ann_file="a.json", sa1b_root="b").reader("train")


def test_samples_per_epoch_draws_images_uniformly(tmp_path):
    """MASA's ``RandomSampleConcatDataset(fixed_length=...)``: an epoch of N samples, each image drawn uniformly."""
    reader = COCOReader(_write_coco(tmp_path, images=4), tmp_path / "images")
    dataset = PairDataset(reader, 32, augment=None, samples_per_epoch=400)
    assert len(dataset) == 400
    names = [dataset[(i, 0, 0)].name for i in range(400)]
    counts = np.array([names.count(f"im{k}") for k in range(4)])
    assert counts.sum() == 400 and (np.abs(counts - 100) < 35).all()
    assert names == [dataset[(i, 0, 0)].name for i in range(400)]  # seeded
    assert names != [dataset[(i, 1, 0)].name for i in range(400)]  # another epoch, another draw
    with pytest.raises(ValueError, match="samples_per_epoch"):
        PairDataset(reader, 32, samples_per_epoch=10, repeat=2)

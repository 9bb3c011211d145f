"""Boundary data: reader items, pseudo-label items (pseudo OR human), the 99/1 split, seeding, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from samlab.data.boundaries import boundary_target, resize_masks
from samlab.data.boundary_datamodule import (
    BoundaryAugment,
    BoundaryBatch,
    BoundaryDataModule,
    PseudoLabelDataset,
    ReaderBoundaryDataset,
    collate_boundaries,
    split_pseudo_labels,
)
from samlab.data.formats.base import read_image
from samlab.data.formats.sa1b import SA1BReader
from samlab.data.synth import synthesize
from samlab.errors import DataError
from samlab.masks import encode_rle
from samlab.tools.inspection import open_reader


def test_reader_items_have_the_boundary_of_their_masks(sa1b_root):
    reader = SA1BReader(sa1b_root)
    dataset = ReaderBoundaryDataset(reader, 32, thickness=3, with_human_boundary=True)
    sample = dataset[0]
    video = reader[0]
    masks = video.masks(0).decode(video.masks(0).ids())
    expected = boundary_target(resize_masks(masks, (32, 32)), 3)
    assert sample.image.shape == (3, 32, 32) and sample.image.dtype == torch.uint8
    np.testing.assert_array_equal(sample.target.numpy() > 0, expected)
    assert sample.orig_size == (48, 64) and sample.name == video.name and sample.source == str(sa1b_root)
    assert sample.human_boundary["size"] == [48, 64]


def test_mose_frames_are_items(mose_root):
    dataset = ReaderBoundaryDataset(open_reader("mose", mose_root), 32)
    assert len(dataset) == 3 * 8
    assert dataset.name(9).count("/") == 1
    dataset.exclude({dataset.name(0), dataset.name(9)})
    assert len(dataset) == 22 and dataset.name(0) != dataset.name(9)


def test_training_augmentation_is_seeded_and_flips_the_target(sa1b_root):
    dataset = ReaderBoundaryDataset(SA1BReader(sa1b_root), 32, augment=BoundaryAugment(p=1.0, flip_prob=1.0))
    first, again, other_epoch = dataset[(1, 0, 0)], dataset[(1, 0, 0)], dataset[(1, 1, 0)]
    assert torch.equal(first.image, again.image)
    assert not torch.equal(first.image, other_epoch.image)
    plain = ReaderBoundaryDataset(SA1BReader(sa1b_root), 32)[1]
    assert torch.equal(first.target, plain.target.flip(-1))


def test_image_without_masks_names_the_file(tmp_path):
    synthesize("sa1b", tmp_path, videos=1, size=(48, 64), seed=0, objects=2)
    json_path = next(tmp_path.rglob("*.json"))
    record = json.loads(json_path.read_text())
    record["annotations"] = []
    json_path.write_text(json.dumps(record))
    dataset = ReaderBoundaryDataset(SA1BReader(tmp_path), 32)
    with pytest.raises(DataError, match=rf"{json_path.name}.*has no masks"):
        dataset[0]


def test_mask_of_the_wrong_size_names_the_file(tmp_path):
    synthesize("sa1b", tmp_path, videos=1, size=(48, 64), seed=0, objects=2)
    json_path = next(tmp_path.rglob("*.json"))
    record = json.loads(json_path.read_text())
    record["annotations"][0]["segmentation"] = encode_rle(np.ones((20, 20), dtype=bool))
    json_path.write_text(json.dumps(record))
    with pytest.raises(DataError, match=json_path.name):
        ReaderBoundaryDataset(SA1BReader(tmp_path), 32)[0]


def _pseudo_folder(tmp_path: Path, sa1b_root: Path, count: int = 4) -> Path:
    folder = tmp_path / "pseudo"
    folder.mkdir()
    images = sorted(sa1b_root.rglob("*.jpg"))
    for i in range(count):
        image = images[i % len(images)]
        pseudo = np.zeros((48, 64), dtype=bool)
        pseudo[:, 20:24] = True
        human = np.zeros((48, 64), dtype=bool)
        human[30:34] = True
        record = {"image": str(image), "height": 48, "width": 64, "source": str(sa1b_root)}
        record |= {"pseudo_label": encode_rle(pseudo), "human_boundary": encode_rle(human) if i else None}
        (folder / f"img{i}.json").write_text(json.dumps(record))
    return folder


def test_pseudo_label_target_is_pseudo_or_human(tmp_path, sa1b_root):
    folder = _pseudo_folder(tmp_path, sa1b_root)
    dataset = PseudoLabelDataset(str(folder), sorted(folder.glob("*.json")), 64)
    with_human, without = dataset[1], dataset[0]
    # 48 rows become 64: the human line at rows 30..33 lands on rows 40..45.
    assert with_human.target[:, 20:24].all() and with_human.target[41:45].all()
    assert without.target[:, 20:24].all() and not without.target[38:48, :18].any()
    assert with_human.name == "img1" and with_human.image_path == str(sorted(sa1b_root.rglob("*.jpg"))[1])
    resized = cv2.resize(read_image(with_human.image_path), (64, 64), interpolation=cv2.INTER_LINEAR)
    assert torch.equal(with_human.image.permute(1, 2, 0), torch.from_numpy(resized))


def test_unreadable_or_mis_sized_pseudo_label_names_the_file(tmp_path, sa1b_root):
    folder = _pseudo_folder(tmp_path, sa1b_root, count=2)
    (folder / "img0.json").write_text("{not json")
    record = json.loads((folder / "img1.json").read_text())
    record["height"] = 40
    (folder / "img1.json").write_text(json.dumps(record))
    dataset = PseudoLabelDataset(str(folder), sorted(folder.glob("*.json")), 32)
    with pytest.raises(DataError, match=r"img0\.json: unreadable pseudo-label JSON"):
        dataset[0]
    with pytest.raises(DataError, match=r"img1\.json: label is 64x48 but the image is 64x40"):
        dataset[1]


def test_split_is_about_99_to_1_deterministic_and_stable(tmp_path):
    folder = tmp_path / "labels"
    folder.mkdir()
    for i in range(2000):
        (folder / f"{i:04d}.json").write_text("{}")
    train, val = split_pseudo_labels(folder)
    assert 10 <= len(val) <= 30 and len(train) + len(val) == 2000 and not set(train) & set(val)
    assert split_pseudo_labels(folder) == (train, val)
    for i in range(2000, 2500):
        (folder / f"{i:04d}.json").write_text("{}")
    train_more, val_more = split_pseudo_labels(folder)
    assert set(val) <= set(val_more) and set(train) <= set(train_more)  # no file changes side


def test_small_folders_keep_one_validation_file_and_empty_ones_are_errors(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.json").write_text("{}")
    assert [len(part) for part in split_pseudo_labels(folder)] == [2, 1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no pseudo-label JSON"):
        split_pseudo_labels(tmp_path / "empty")


def test_datamodule_batches_and_skips_bad_samples(tmp_path, sa1b_root):
    folder = _pseudo_folder(tmp_path, sa1b_root, count=6)
    (folder / "img3.json").write_text("{broken")
    data = BoundaryDataModule(
        image_size=32, pseudo_label_roots=[str(folder)], batch_size=5, val_fraction=0.2, skip_bad_samples=True
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert isinstance(batch, BoundaryBatch) and batch.images.shape == (5, 3, 32, 32)
    assert batch.targets.shape == (5, 32, 32) and batch.num_skipped >= 1
    assert len(data.dataset("val")) == 1
    normalized = data.on_after_batch_transfer(batch, 0)
    assert normalized.images.dtype == torch.float32
    single = collate_boundaries([data.dataset("val")[0]])
    assert single.orig_sizes.tolist() == [[48, 64]]

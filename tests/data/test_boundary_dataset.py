"""Boundary data: reader items, pseudo-label items (merged / pseudo / human, DirectSAM's JSON layout), the 99/1
split, seeding, the validation definition, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from samlab.data.boundaries import (
    BoundaryAugment,
    BoundaryBatch,
    BoundaryDataModule,
    LabelMapBoundaryDataset,
    PseudoLabelDataset,
    ReaderBoundaryDataset,
    boundary_target,
    collate_boundaries,
    pseudo_label_record,
    resize_image,
    resize_masks,
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
    dataset = ReaderBoundaryDataset(reader, 32, thickness=3)
    sample = dataset[0]
    video = reader[0]
    masks = video.masks(0).decode(video.masks(0).ids())
    expected = boundary_target(resize_masks(masks, (32, 32)), 3)
    assert sample.image.shape == (3, 32, 32) and sample.image.dtype == torch.uint8
    np.testing.assert_array_equal(sample.target.numpy() > 0, expected)
    assert sample.orig_size == (48, 64) and sample.name == video.name and sample.source == str(sa1b_root)
    assert torch.equal(sample.image.permute(1, 2, 0), torch.from_numpy(resize_image(video.read_frame(0), 32)))


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
    with pytest.raises(DataError, match=rf"{json_path.name}.*has no masks") as info:
        dataset[0]
    assert "skip_bad_samples: true" in str(info.value)  # the way out, where the data set offers one


def test_mask_of_the_wrong_size_names_the_file(tmp_path):
    synthesize("sa1b", tmp_path, videos=1, size=(48, 64), seed=0, objects=2)
    json_path = next(tmp_path.rglob("*.json"))
    record = json.loads(json_path.read_text())
    record["annotations"][0]["segmentation"] = encode_rle(np.ones((20, 20), dtype=bool))
    json_path.write_text(json.dumps(record))
    with pytest.raises(DataError, match=json_path.name):
        ReaderBoundaryDataset(SA1BReader(tmp_path), 32)[0]


def _pseudo_folder(tmp_path: Path, sa1b_root: Path, count: int = 4) -> Path:
    """``count`` JSONs in DirectSAM's layout, labels at a 40 px model resolution: the pseudo-label a vertical
    line (two generations, the newer one wider), the human label a horizontal line (none on img0)."""
    folder = tmp_path / "pseudo"
    folder.mkdir()
    images = sorted(sa1b_root.rglob("*.jpg"))
    for i in range(count):
        old, new, human = (np.zeros((40, 40), dtype=bool) for _ in range(3))
        old[:, 20:22] = True
        new[:, 20:24] = True
        human[24:28] = True
        record = pseudo_label_record(
            str(images[i % len(images)]),
            (64, 48),
            [("gen1", encode_rle(old)), ("gen2", encode_rle(new))],
            [("sa1b", encode_rle(human))] if i else [],
        )
        (folder / f"img{i}.json").write_text(json.dumps(record))
    return folder


def test_pseudo_label_target_is_merged_pseudo_or_human(tmp_path, sa1b_root):
    folder = _pseudo_folder(tmp_path, sa1b_root)
    files = sorted(folder.glob("*.json"))
    merged = PseudoLabelDataset(str(folder), files, 80)[1]
    # 40 px labels become 80 px (nearest): the newest pseudo-label's columns 20..23 -> 40..47, rows 24..27 -> 48..55.
    assert merged.target[:, 40:48].all() and merged.target[48:56].all() and merged.target.sum() == 80 * 8 + 8 * 72
    pseudo = PseudoLabelDataset(str(folder), files, 80, label="pseudo")[1]
    assert pseudo.target[:, 40:48].all() and pseudo.target.sum() == 80 * 8
    human = PseudoLabelDataset(str(folder), files, 80, label="human")[1]
    assert human.target[48:56].all() and human.target.sum() == 80 * 8
    first = PseudoLabelDataset(str(folder), files, 80, label="pseudo", pseudo_label_source="gen1")[1]
    assert first.target.sum() == 80 * 4
    assert merged.name == "img1" and merged.image_path == str(sorted(sa1b_root.rglob("*.jpg"))[1])
    assert torch.equal(merged.image.permute(1, 2, 0), torch.from_numpy(resize_image(read_image(merged.image_path), 80)))
    with pytest.raises(DataError, match=r"img0\.json: no human label"):
        PseudoLabelDataset(str(folder), files, 80, label="human")[0]
    with pytest.raises(DataError, match=r"img0\.json: no pseudo-label from 'gen3' \(sources: \['gen1', 'gen2'\]\)"):
        PseudoLabelDataset(str(folder), files, 80, pseudo_label_source="gen3")[0]
    with pytest.raises(ValueError, match="label must be one of merged, pseudo, human"):
        PseudoLabelDataset(str(folder), files, 80, label="both")


def test_unreadable_or_mis_sized_pseudo_label_names_the_file(tmp_path, sa1b_root):
    folder = _pseudo_folder(tmp_path, sa1b_root, count=3)
    (folder / "img0.json").write_text("{not json")
    record = json.loads((folder / "img1.json").read_text())
    record["image_size"] = [64, 40]
    (folder / "img1.json").write_text(json.dumps(record))
    record["image_size"] = [64, 48]
    record["human_label"][0]["label"] = encode_rle(np.zeros((30, 30), dtype=bool))
    (folder / "img2.json").write_text(json.dumps(record))
    dataset = PseudoLabelDataset(str(folder), sorted(folder.glob("*.json")), 32)
    with pytest.raises(DataError, match=r"img0\.json: unreadable pseudo-label JSON"):
        dataset[0]
    with pytest.raises(DataError, match=r"img1\.json: image .* is 64x48, not 64x40"):
        dataset[1]
    with pytest.raises(DataError, match=r"img2\.json: labels differ in size"):
        dataset[2]
    (folder / "img0.json").write_text(json.dumps({"image_path": "x.jpg"}))
    with pytest.raises(DataError, match="lacks image_size, pseudo_label, human_label"):
        dataset[0]


def test_split_is_about_99_to_1_deterministic_and_stable(tmp_path):
    folder = tmp_path / "labels"
    folder.mkdir()
    for i in range(2000):
        (folder / f"{i:04d}.json").write_text("{}")
    (folder / "_index.json").write_text("{}")  # DirectSAM leaves out names starting with "_"
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


def test_validation_follows_evaluate_py_and_prediction_draws_human_labels(sa1b_root):
    data = BoundaryDataModule(
        image_size=64,
        root=str(sa1b_root),
        val_root=str(sa1b_root),
        predict_root=str(sa1b_root),
        thickness=3,
        val_thickness=2,
        val_image_size=48,
        human_thickness=9,
    )
    reader = SA1BReader(sa1b_root)
    masks = reader[0].masks(0).decode(reader[0].masks(0).ids())
    expected = {
        "train": boundary_target(resize_masks(masks, (64, 64)), 3),
        "val": boundary_target(resize_masks(masks, (48, 48)), 2),
        "predict": boundary_target(resize_masks(masks, (64, 64)), 9),
    }
    for split, target in expected.items():
        sample = data.dataset(split)[(0, 0, 0)]
        np.testing.assert_array_equal(sample.target.numpy() > 0, target, err_msg=split)
    assert data.dataset("train").augment.flip_prob == 0 and data.dataset("val").augment is None


def _label_map_folder(tmp_path: Path) -> Path:
    """DirectSAM's golden label maps as grey PNGs beside random JPEGs of their size, plus one image without labels."""
    from PIL import Image

    golden = np.load(Path(__file__).resolve().parents[1] / "golden" / "directsam" / "boundary_targets.npz")
    root = tmp_path / "label_maps"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i, label_map in enumerate(golden["label_maps"]):
        Image.fromarray(rng.integers(0, 256, (*label_map.shape, 3), dtype=np.uint8)).save(root / "images" / f"{i}.jpg")
        Image.fromarray(label_map).save(root / "labels" / f"{i}.png")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / "images" / "unlabelled.jpg")
    return root


def test_label_map_folders_give_directsam_s_targets(tmp_path):
    from PIL import Image

    root = _label_map_folder(tmp_path)
    golden = np.load(Path(__file__).resolve().parents[1] / "golden" / "directsam" / "boundary_targets.npz")
    size = int(golden["resized_size"])
    for j, thickness in enumerate(golden["thicknesses"]):
        dataset = LabelMapBoundaryDataset(root, size, thickness=int(thickness))
        assert len(dataset) == len(golden["label_maps"])  # the image without a label map is left out
        for i in range(len(dataset)):
            np.testing.assert_array_equal(dataset[i].target.numpy() > 0, golden["resized_boundaries"][i, j])
    # An RGB label PNG: its first channel, as DirectSAM's single_channel mode.
    rgb = np.stack([golden["label_maps"][0], np.zeros_like(golden["label_maps"][0]), golden["label_maps"][1]], -1)
    Image.fromarray(rgb).save(root / "labels" / "0.png")
    np.testing.assert_array_equal(
        LabelMapBoundaryDataset(root, size, thickness=2)[0].target.numpy() > 0, golden["resized_boundaries"][0, 0]
    )
    dataset = LabelMapBoundaryDataset(root, size)
    dataset.exclude({"0", "3"})
    assert [dataset.name(i) for i in range(len(dataset))] == ["1", "2", "4", "5"]


def test_label_map_folder_errors_name_the_file(tmp_path):
    from PIL import Image

    root = _label_map_folder(tmp_path)
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(root / "labels" / "2.png")
    with pytest.raises(DataError, match=r"labels/2\.png: label map is 10x10 but image 2\.jpg is 96x72"):
        LabelMapBoundaryDataset(root, 32)[2]
    with pytest.raises(DataError, match=r"no images/\*\.png with a labels/<same name>\.png"):
        LabelMapBoundaryDataset(root, 32, image_suffix="png")
    with pytest.raises(DataError, match="masks: label-map dataset folder does not exist"):
        LabelMapBoundaryDataset(root, 32, label_dir="masks")
    (root / "labels" / "2.png").unlink()
    data = BoundaryDataModule(image_size=32, format="label_maps", root=str(root), batch_size=5)
    data.setup("fit")
    assert isinstance(data.dataset("train"), LabelMapBoundaryDataset) and len(data.dataset("train")) == 5
    assert next(iter(data.train_dataloader())).targets.shape == (5, 32, 32)

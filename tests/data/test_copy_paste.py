"""CopyPaste: pixel-exact pasting and occlusion update, hidden instances removed, determinism, YAML wiring."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from jsonargparse import ArgumentParser

from samlab.data.copy_paste import CopyPaste, CopyPasteTransform
from samlab.data.datamodules import ClipDataModule
from samlab.data.sampling import Clip
from samlab.data.transforms import EvalTransform
from samlab.tools.object_bank import extract_objects

H, W = 12, 16


def write_bank(folder: Path, objects: list[tuple[np.ndarray, np.ndarray, int]]) -> Path:
    """A bank of ``(rgb [h, w, 3] uint8, mask [h, w] bool, category id)`` objects, ann ids 100, 101, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for k, (rgb, mask, category_id) in enumerate(objects):
        rgba = np.dstack([rgb, mask.astype(np.uint8) * 255])
        assert cv2.imwrite(str(folder / f"{100 + k}.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
        records.append({"file": f"{100 + k}.png", "ann_id": 100 + k, "category_id": category_id})
    (folder / "objects.json").write_text(json.dumps({"objects": records, "categories": []}))
    return folder


def plus(size: int = 5) -> np.ndarray:
    """A plus sign filling its box (so its tight box is the whole cut-out)."""
    mask = np.zeros((size, size), dtype=bool)
    mask[size // 2] = True
    mask[:, size // 2] = True
    return mask


def textured(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def hand_clip(num_frames: int = 1) -> Clip:
    """Objects 3 (two pixels), 5 (the left half) and 8 (one pixel) on a textured frame."""
    masks = np.zeros((num_frames, 3, H, W), dtype=bool)
    masks[:, 0, 2, 3:5] = True
    masks[:, 1, :, : W // 2] = True
    masks[:, 1, 2, 3:5] = False
    masks[:, 2, 9, 12] = True
    frames = [textured(H, W, t) for t in range(num_frames)]
    return Clip("hand", frames, masks, [3, 5, 8], list(range(num_frames)), (H, W), labels=[1, 1, 2])


def paste_box(mask: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(rows[0]), int(cols[0])


@pytest.mark.parametrize("num_frames", [1, 2])
def test_pixel_exact_paste_and_occlusion(tmp_path: Path, num_frames: int) -> None:
    rgb = textured(5, 5, 9)
    bank = write_bank(tmp_path / "bank", [(rgb, plus(), 7)])
    paste = CopyPaste(bank, max_objects=1, scale=(1.0, 1.0), p=1.0)
    for seed in range(6):
        clip = hand_clip(num_frames)
        original_masks = clip.masks.copy()
        out = paste(clip, np.random.default_rng(seed))
        np.testing.assert_array_equal(clip.masks, original_masks)  # the input is not modified
        new = out.masks[:, -1]
        y0, x0 = paste_box(new[0])
        expected = np.zeros((H, W), dtype=bool)
        expected[y0 : y0 + 5, x0 : x0 + 5] = plus()
        assert out.object_ids[-1] == -1 and out.labels[-1] == 7
        for t in range(num_frames):
            np.testing.assert_array_equal(new[t], expected)
            np.testing.assert_array_equal(out.frames[t][expected], rgb[plus()])
            np.testing.assert_array_equal(out.frames[t][~expected], clip.frames[t][~expected])
        # Each original instance keeps exactly its uncovered pixels, and is gone when none is left.
        kept = [o for o in range(3) if (original_masks[0, o] & ~expected).any()]
        assert out.object_ids[:-1] == [clip.object_ids[o] for o in kept]
        assert out.labels[:-1] == [clip.labels[o] for o in kept]
        for k, o in enumerate(kept):
            np.testing.assert_array_equal(out.masks[:, k], original_masks[:, o] & ~expected)


def test_fully_hidden_instances_are_removed(tmp_path: Path) -> None:
    bank = write_bank(tmp_path / "bank", [(textured(H, W, 3), np.ones((H, W), dtype=bool), 4)])
    out = CopyPaste(bank, max_objects=1, scale=(1.0, 1.0), p=1.0)(hand_clip(), np.random.default_rng(0))
    assert out.object_ids == [-1] and out.labels == [4]
    assert out.masks.shape == (1, 1, H, W) and out.masks.all()


def test_count_scale_probability_and_determinism(tmp_path: Path) -> None:
    objects = [(textured(4, 4, 1), np.ones((4, 4), dtype=bool), 7), (textured(3, 3, 2), plus(3), 8)]
    bank = write_bank(tmp_path / "bank", objects)
    paste = CopyPaste(bank, max_objects=3, scale=(2.0, 2.0), p=1.0)
    counts = set()
    for seed in range(20):
        clip = hand_clip()
        out = paste(clip, np.random.default_rng(seed))
        again = paste(clip, np.random.default_rng(seed))
        np.testing.assert_array_equal(out.masks, again.masks)
        np.testing.assert_array_equal(out.frames[0], again.frames[0])
        new_ids = [i for i in out.object_ids if i < 0]
        counts.add(len(new_ids))
        assert len(set(new_ids)) == len(new_ids) and new_ids[-1] in (-1, -2, -3)
        last = out.masks[0, -1]
        rows, cols = np.flatnonzero(last.any(1)), np.flatnonzero(last.any(0))
        assert (rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0]) in {(8, 8), (6, 6)}  # scaled 2x
    assert counts == {1, 2, 3}
    different = [paste(hand_clip(), np.random.default_rng(s)).frames[0] for s in (0, 1)]
    assert not np.array_equal(*different)
    never = CopyPaste(bank, p=0.0)
    clip = hand_clip()
    assert never(clip, np.random.default_rng(0)) is clip


def test_too_large_objects_are_shrunk_to_fit(tmp_path: Path) -> None:
    bank = write_bank(tmp_path / "bank", [(textured(30, 10, 1), np.ones((30, 10), dtype=bool), 7)])
    out = CopyPaste(bank, max_objects=1, scale=(1.0, 1.0), p=1.0)(hand_clip(), np.random.default_rng(0))
    assert out.masks[0, -1].sum() == H * 4  # 30x10 shrunk by 12/30 to 12x4


def test_bad_arguments(tmp_path: Path) -> None:
    bank = write_bank(tmp_path / "bank", [(textured(3, 3, 1), plus(3), 7)])
    with pytest.raises(ValueError, match="max_objects must be >= 1"):
        CopyPaste(bank, max_objects=0)
    with pytest.raises(ValueError, match="scale must be"):
        CopyPaste(bank, scale=(1.5, 0.5))


def test_transform_composes_and_is_usable_from_yaml(coco_root: Path, tmp_path: Path) -> None:
    ann_file, images = coco_root / "annotations" / "instances.json", coco_root / "images"
    bank = tmp_path / "bank"
    extract_objects(ann_file, images, bank, min_area=50, progress=False)

    transform = CopyPasteTransform(str(bank), then=EvalTransform(resolution=16, normalize=False), p=1.0)
    assert transform.normalize is False and transform.mean == EvalTransform(16).mean
    out = transform(hand_clip(), np.random.default_rng(0))
    assert out.frames[0].shape == (3, 16, 16) and out.frames[0].dtype == torch.uint8
    assert out.masks.shape[2:] == (16, 16) and out.object_ids[-1] < 0
    twice = CopyPaste(bank, max_objects=1, p=1.0)
    once = twice(hand_clip(), np.random.default_rng(1))
    assert once.object_ids[-1] == -1 and twice(once, np.random.default_rng(2)).object_ids[-1] == -2

    config = {
        "data": {
            "class_path": "samlab.data.datamodules.COCODataModule",
            "init_args": {
                "ann_file": str(ann_file),
                "image_root": str(images),
                "image_size": 32,
                "batch_size": 2,
                "train_transform": {
                    "class_path": "samlab.data.copy_paste.CopyPasteTransform",
                    "init_args": {
                        "bank_dir": str(bank),
                        "max_objects": 2,
                        "p": 1.0,
                        "then": {
                            "class_path": "samlab.data.transforms.SAM2TrainTransform",
                            "init_args": {"resolution": 32, "normalize": False},
                        },
                    },
                },
            },
        }
    }
    parser = ArgumentParser()
    parser.add_argument("--data", type=ClipDataModule)
    datamodule = parser.instantiate_classes(parser.parse_string(yaml.safe_dump(config))).data
    datamodule.setup("fit")
    batch = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    assert batch.images.shape == (1, 2, 3, 32, 32) and batch.images.dtype == torch.float32
    pasted = batch.object_ids < 0
    assert 1 <= pasted.sum() <= 4 and set(batch.labels[pasted].tolist()) <= {1, 2}  # bank categories
    assert batch.masks.flatten(1).any(1).all()  # no empty target

"""synthesize(): exact layouts and schemas, returned ground truth recounted from the files, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from samlab.data.synth import davis_palette, synthesize
from samlab.masks import decode_rle, decode_segmentation, mask_to_box, rle_area

EXAMPLE = Path(__file__).resolve().parents[2] / "../shared/data/sav_example/sav_000001_manual.json"
SAV_KEYS = {
    "video_id", "video_duration", "video_frame_count", "video_height", "video_width", "video_resolution",
    "video_environment", "video_split", "masklet", "masklet_id", "masklet_size_rel", "masklet_size_abs",
    "masklet_size_bucket", "masklet_visibility_changes", "masklet_first_appeared_frame", "masklet_frame_count",
    "masklet_edited_frame_count", "masklet_type", "masklet_stability_score", "masklet_num",
}  # fmt: skip


def _mose_labels(root: Path) -> dict[str, list[np.ndarray]]:
    return {
        video.name: [np.asarray(Image.open(p)) for p in sorted(video.glob("*.png"))]
        for video in sorted((root / "Annotations").iterdir())
    }


def test_mose_layout_ground_truth_and_exit_reentry(tmp_path: Path) -> None:
    summary = synthesize("mose", tmp_path, videos=2, frames=8, size=(32, 48), seed=0, objects=3)
    labels = _mose_labels(tmp_path)
    assert sorted(labels) == ["synth_0000", "synth_0001"]
    assert all(len(list((tmp_path / "JPEGImages" / v).glob("*.jpg"))) == 8 for v in labels)
    with Image.open(tmp_path / "Annotations" / "synth_0000" / "00000.png") as png:
        assert png.mode == "P" and png.getpalette()[:9] == davis_palette()[:9]
    present = {
        v: np.array([[(frame == i).any() for i in (1, 2, 3)] for frame in frames]) for v, frames in labels.items()
    }
    assert summary == {
        "items": 2,
        "frames": 16,
        "annotated_frames": 16,
        "objects": sum(int(p.any(axis=0).sum()) for p in present.values()),
        "masks": sum(int(p.sum()) for p in present.values()),
        "sparsely_annotated": [],
    }
    for p in present.values():
        assert p[0].all()  # every object is visible on frame 0
        # object 1 leaves the frame and comes back
        gone = np.flatnonzero(~p[:, 0])
        assert gone.size and p[gone[-1] + 1 :, 0].any()
    assert summary["masks"] < 16 * 3


def test_deterministic_given_seed(tmp_path: Path) -> None:
    first = synthesize("mose", tmp_path / "a", videos=1, frames=3, size=(16, 24), seed=7)
    second = synthesize("mose", tmp_path / "b", videos=1, frames=3, size=(16, 24), seed=7)
    synthesize("mose", tmp_path / "c", videos=1, frames=3, size=(16, 24), seed=8)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert first == second and len(files) == 6
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert any((tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes() for f in files)


def test_sav_train_schema_video_and_frames(tmp_path: Path) -> None:
    summary = synthesize("sav", tmp_path, videos=1, frames=3, size=(32, 48), seed=1, objects=2)
    assert summary == {
        "items": 1,
        "frames": 9,
        "annotated_frames": 3,
        "objects": 2,
        "masks": summary["masks"],
        "sparsely_annotated": ["sav_000001"],  # every 4th frame
    }
    data = json.loads((tmp_path / "sav_000001_manual.json").read_text())
    assert set(data) == SAV_KEYS
    if EXAMPLE.is_file():
        real = json.loads(EXAMPLE.read_text())
        assert {k: type(v) for k, v in data.items()} == {k: type(v) for k, v in real.items()}
    assert (data["video_height"], data["video_width"], data["video_frame_count"]) == (32.0, 48.0, 9.0)
    assert data["masklet_num"] == 2 and len(data["masklet"]) == 3 and data["masklet_type"] == ["manual"] * 2
    masks = np.array([[decode_rle(rle) for rle in frame] for frame in data["masklet"]])
    assert masks.shape == (3, 2, 32, 48) and summary["masks"] == int(masks.any(axis=(2, 3)).sum())
    visible = masks.any(axis=(2, 3))
    mean_area = [masks[visible[:, o], o].sum(axis=(1, 2)).mean() for o in range(2)]
    np.testing.assert_allclose(data["masklet_size_abs"], mean_area)
    np.testing.assert_allclose(data["masklet_size_rel"], np.array(mean_area) / (32 * 48))
    assert len(list((tmp_path / "sav_000001").glob("*.jpg"))) == 9
    with av.open(str(tmp_path / "sav_000001.mp4")) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 9 and decoded[0].shape == (32, 48, 3)
    with pytest.raises(ValueError, match="even"):
        synthesize("sav", tmp_path / "odd", videos=1, frames=2, size=(31, 48))


def test_sav_val_layout(tmp_path: Path) -> None:
    summary = synthesize("sav", tmp_path, videos=2, frames=3, size=(16, 24), seed=2, objects=2, layout="val")
    assert len(list((tmp_path / "JPEGImages_24fps" / "sav_000002").glob("*.jpg"))) == 9
    pngs = sorted((tmp_path / "Annotations_6fps" / "sav_000002").rglob("*.png"))
    assert [p.relative_to(pngs[0].parents[1]).as_posix() for p in pngs[:3]] == [
        "000/00000.png",
        "000/00004.png",
        "000/00008.png",
    ]
    assert len(pngs) == 6 and not (tmp_path / "sav_000001.mp4").exists()
    nonempty = sum(int((np.asarray(Image.open(p)) > 0).any()) for p in (tmp_path / "Annotations_6fps").rglob("*.png"))
    assert summary == {
        "items": 2,
        "frames": 18,
        "annotated_frames": 6,
        "objects": 4,
        "masks": nonempty,
        "sparsely_annotated": ["sav_000001", "sav_000002"],
    }


def test_sa1b_schema_and_overlapping_masks(tmp_path: Path) -> None:
    summary = synthesize("sa1b", tmp_path, videos=2, size=(32, 48), seed=3, objects=3)
    assert summary == {
        "items": 2,
        "frames": 2,
        "annotated_frames": 2,
        "objects": 7,
        "masks": 7,
        "sparsely_annotated": [],
    }
    record = json.loads((tmp_path / "sa_1.json").read_text())
    assert record["image"] == {"image_id": 1, "width": 48, "height": 32, "file_name": "sa_1.jpg"}
    assert (tmp_path / "sa_1.jpg").is_file() and (tmp_path / "sa_2.jpg").is_file()
    masks = []
    for ann in record["annotations"]:
        mask = decode_rle(ann["segmentation"])
        x0, y0, x1, y1 = mask_to_box(mask)
        assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0] and ann["area"] == rle_area(ann["segmentation"])
        x, y = ann["point_coords"][0]
        assert mask[int(y), int(x)]
        assert ann["crop_box"] == [0, 0, 48, 32]
        masks.append(mask)
    # the 4th mask is the union of the first two (part/whole overlap)
    np.testing.assert_array_equal(masks[3], masks[0] | masks[1])
    assert len(json.loads((tmp_path / "sa_2.json").read_text())["annotations"]) == 3


def test_coco_schema_and_segmentation_kinds(tmp_path: Path) -> None:
    summary = synthesize("coco", tmp_path, videos=2, size=(32, 48), seed=4, objects=3)
    data = json.loads((tmp_path / "annotations" / "instances.json").read_text())
    assert [im["file_name"] for im in data["images"]] == ["synth_0000.jpg", "synth_0001.jpg"]
    assert all((tmp_path / "images" / im["file_name"]).is_file() for im in data["images"])
    assert [c["name"] for c in data["categories"]] == ["ellipse", "polygon"]
    # the crowd region of each image is not an object
    assert summary == {
        "items": 2,
        "frames": 2,
        "annotated_frames": 2,
        "objects": 4,
        "masks": 4,
        "sparsely_annotated": [],
    }
    kinds = []
    for ann in data["annotations"]:
        seg = ann["segmentation"]
        kind = "polygon" if isinstance(seg, list) else "rle" if isinstance(seg["counts"], str) else "uncompressed"
        kinds.append((ann["image_id"], kind, ann["iscrowd"]))
        mask = decode_segmentation(seg, 32, 48)
        assert mask.any() and ann["area"] == mask.sum()
        x0, y0, x1, y1 = mask_to_box(mask)
        assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0]
    assert kinds == [
        (1, "polygon", 0),
        (1, "polygon", 0),
        (1, "uncompressed", 1),
        (2, "polygon", 0),
        (2, "rle", 0),
        (2, "uncompressed", 1),
    ]


def test_palette_and_bad_arguments(tmp_path: Path) -> None:
    palette = davis_palette()
    assert len(palette) == 768 and palette[3:12] == [128, 0, 0, 0, 128, 0, 128, 128, 0]
    with pytest.raises(ValueError, match="unknown format"):
        synthesize("kitti", tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="applies to format 'sav'"):
        synthesize("mose", tmp_path, layout="val")
    with pytest.raises(ValueError, match=">= 1"):
        synthesize("mose", tmp_path, frames=0)

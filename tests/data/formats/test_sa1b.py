"""SA1BReader on tiny SA-1B folders written in the real layout, and the index benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from samlab.data.formats.sa1b import SA1BReader, read_name_list
from samlab.data.sampling import ClipSampler, load_clip
from samlab.errors import DataError
from samlab.masks import encode_rle
from samlab.tools.bench_index import bench_index, write_placeholder_sa1b

H, W = 12, 16


def make_masks(seed: int, count: int) -> np.ndarray:
    """``[count, H, W]`` bool random masks, each non-empty."""
    masks = np.random.default_rng(seed).random((count, H, W)) < 0.3
    masks[:, seed % H, seed % W] = True
    return masks


def write_pair(folder: Path, name: str, masks: np.ndarray, ann_ids: list[int], image_size: tuple[int, int] = (H, W)):
    """Write ``<name>.jpg`` and ``<name>.json`` as SA-1B does; returns the JSON record."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(name)).integers(0, 255, (H, W, 3), dtype=np.uint8)
    assert cv2.imwrite(str(folder / f"{name}.jpg"), pixels)
    annotations = []
    for ann_id, mask in zip(ann_ids, masks):
        ys, xs = np.nonzero(mask)
        annotations.append(
            {
                "id": ann_id,
                "segmentation": encode_rle(mask),
                "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1],
                "area": int(mask.sum()),
                "predicted_iou": 0.9,
                "stability_score": 0.95,
                "point_coords": [[float(xs[0]), float(ys[0])]],
                "crop_box": [0, 0, W, H],
            }
        )
    record = {
        "image": {"image_id": int(name.split("_")[-1]), "width": image_size[1], "height": image_size[0],
                  "file_name": f"{name}.jpg"},
        "annotations": annotations,
    }  # fmt: skip
    (folder / f"{name}.json").write_text(json.dumps(record))
    return record


@pytest.fixture
def sa1b_dir(tmp_path: Path) -> Path:
    """Three images in two tar-extracted subfolders: sa_1 (3 masks), sa_2 (2 masks), sa_10 (1 mask)."""
    root = tmp_path / "sa1b"
    write_pair(root / "sa_000000", "sa_1", make_masks(1, 3), [101, 102, 103])
    write_pair(root / "sa_000000", "sa_2", make_masks(2, 2), [7, 5])
    write_pair(root / "sa_000001", "sa_10", make_masks(10, 1), [42])
    return root


def test_reads_subfolders_names_ids_and_masks(sa1b_dir: Path) -> None:
    reader = SA1BReader(sa1b_dir)
    assert len(reader) == 3
    assert reader.names == ["sa_1", "sa_10", "sa_2"]
    assert [v.name for v in reader] == reader.names
    image = reader[1]
    assert image.num_frames == 1 and image.frame_index(0) == 0
    assert image.frame_path(0) == sa1b_dir / "sa_000001" / "sa_10.jpg"
    assert image.source == str(sa1b_dir / "sa_000001" / "sa_10.json")
    assert image.read_frame(0).shape == (H, W, 3)
    assert image.labels() == {}
    with pytest.raises(IndexError):
        image.frame_path(1)

    masks = reader[2].masks(0)
    assert masks.size == (H, W)
    assert masks.ids() == [5, 7]
    np.testing.assert_array_equal(masks.decode([7, 5]), make_masks(2, 2))
    np.testing.assert_array_equal(reader[0].masks(0).decode([103]), make_masks(1, 3)[2:])


def test_image_info_and_raw_annotations(sa1b_dir: Path) -> None:
    reader = SA1BReader(sa1b_dir)
    assert reader.image_info(0) == {"image_id": 1, "width": W, "height": H, "file_name": "sa_1.jpg"}
    annotations = reader.annotations(0)
    assert [a["id"] for a in annotations] == [101, 102, 103]
    assert annotations[0]["area"] == int(make_masks(1, 3)[0].sum())
    assert annotations[0]["crop_box"] == [0, 0, W, H]


def test_sampled_clip_matches_written_masks(sa1b_dir: Path) -> None:
    reader = SA1BReader(sa1b_dir)
    video = reader[0]
    spec = ClipSampler(num_frames=1, max_num_objects=2).sample(video, np.random.default_rng(0))
    assert len(spec.object_ids) == 2 and set(spec.object_ids) <= {101, 102, 103}
    clip = load_clip(video, spec)
    expected = make_masks(1, 3)[[i - 101 for i in spec.object_ids]]
    np.testing.assert_array_equal(clip.masks[0], expected)
    assert clip.orig_size == (H, W) and clip.frame_indices == [0] and clip.labels == [0, 0]


def test_index_parses_no_json_and_masks_parse_once(sa1b_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_load, real_loads = json.load, json.loads
    monkeypatch.setattr(json, "load", lambda *a, **k: calls.append("load") or real_load(*a, **k))
    monkeypatch.setattr(json, "loads", lambda *a, **k: calls.append("loads") or real_loads(*a, **k))
    reader = SA1BReader(sa1b_dir)
    assert calls == []
    video = reader[0]
    video.masks(0).ids()
    video.masks(0).decode([101])
    assert calls.count("load") == 1  # json.load calls json.loads itself


def test_decodes_only_requested_masks(sa1b_dir: Path) -> None:
    record = json.loads((sa1b_dir / "sa_000000" / "sa_1.json").read_text())
    record["annotations"][1]["segmentation"]["counts"] = "!!!garbage"
    (sa1b_dir / "sa_000000" / "sa_1.json").write_text(json.dumps(record))
    masks = SA1BReader(sa1b_dir)[0].masks(0)
    np.testing.assert_array_equal(masks.decode([101, 103]), make_masks(1, 3)[[0, 2]])
    with pytest.raises(ValueError):
        masks.decode([102])


@pytest.mark.parametrize("suffix", [".txt", ".json"])
def test_file_list_selects_subset_in_its_order(sa1b_dir: Path, tmp_path: Path, suffix: str) -> None:
    names = ["sa_2.jpg", "sa_000001/sa_10.jpg"]
    file_list = tmp_path / f"list{suffix}"
    file_list.write_text(json.dumps(names) if suffix == ".json" else "sa_2\n\nsa_000001/sa_10.jpg\n")
    reader = SA1BReader(sa1b_dir, file_list=file_list)
    assert reader.names == ["sa_2", "sa_10"]
    assert reader[1].frame_path(0) == sa1b_dir / "sa_000001" / "sa_10.jpg"


def test_read_name_list(tmp_path: Path) -> None:
    listed = tmp_path / "names"
    listed.write_text(' ["sa_1.jpg", "a/sa_2.JPG", "sa_3", "x.y.json", "v1.2"]')
    assert read_name_list(listed) == ["sa_1", "sa_2", "sa_3", "x.y", "v1.2"]
    listed.write_text('["sa_1.jpg", 3]')
    with pytest.raises(DataError, match="names: JSON file list must be a list"):
        read_name_list(listed)
    listed.write_text('["sa_1.jpg"')
    with pytest.raises(DataError, match="names: corrupt JSON file list"):
        read_name_list(listed)
    with pytest.raises(DataError, match=r"missing\.txt: file list is missing"):
        read_name_list(tmp_path / "missing.txt")


def test_file_list_name_missing_on_disk(sa1b_dir: Path, tmp_path: Path) -> None:
    file_list = tmp_path / "list.json"
    file_list.write_text(json.dumps(["sa_1.jpg", "sa_99.jpg"]))
    with pytest.raises(DataError, match=r"list\.json: listed image 'sa_99' has no image/JSON pair"):
        SA1BReader(sa1b_dir, file_list=file_list)
    reader = SA1BReader(sa1b_dir, file_list=file_list, strict=False)
    assert reader.names == ["sa_1"]
    assert [(p.path, "sa_99" in p.message) for p in reader.problems] == [(str(file_list), True)]


@pytest.mark.parametrize(
    ("remove", "message"),
    [("sa_10.json", "image has no annotation JSON"), ("sa_10.jpg", "annotation JSON has no image")],
)
def test_unpaired_file_is_a_problem(sa1b_dir: Path, remove: str, message: str) -> None:
    (sa1b_dir / "sa_000001" / remove).unlink()
    other = "sa_10.jpg" if remove.endswith(".json") else "sa_10.json"
    with pytest.raises(DataError, match=f"sa_000001/{other}: {message}"):
        SA1BReader(sa1b_dir)
    reader = SA1BReader(sa1b_dir, strict=False)
    assert reader.names == ["sa_1", "sa_2"]
    assert [str(p) for p in reader.problems] == [f"{sa1b_dir / 'sa_000001' / other}: {message}"]


def test_name_in_two_subfolders_is_a_problem(sa1b_dir: Path) -> None:
    write_pair(sa1b_dir / "sa_000001", "sa_2", make_masks(3, 1), [1])
    with pytest.raises(DataError, match="image name 'sa_2' also exists"):
        SA1BReader(sa1b_dir)
    reader = SA1BReader(sa1b_dir, strict=False)
    assert reader.names == ["sa_1", "sa_10", "sa_2"]
    assert len(reader.problems) == 1


def test_corrupt_json_names_it(sa1b_dir: Path) -> None:
    path = sa1b_dir / "sa_000000" / "sa_2.json"
    path.write_text('{"image": {"width": 16, "height": 12}, "annotations": [')
    reader = SA1BReader(sa1b_dir)
    with pytest.raises(DataError, match=r"sa_2\.json: corrupt annotation JSON"):
        reader[2].masks(0)
    path.write_text('{"annotations": []}')
    with pytest.raises(DataError, match=r"sa_2\.json: not an SA-1B annotation file"):
        reader[2].masks(0)
    reader[0].masks(0)


def test_size_mismatch_names_json(tmp_path: Path) -> None:
    write_pair(tmp_path, "sa_3", make_masks(3, 2), [1, 2], image_size=(H, W + 1))
    with pytest.raises(DataError, match=r"sa_3\.json: annotation 1: RLE size \[12, 16\] \(HxW\) differs"):
        SA1BReader(tmp_path)[0].masks(0)


def test_missing_or_empty_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere: SA-1B root folder does not exist"):
        SA1BReader(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no SA-1B image/JSON pair found"):
        SA1BReader(tmp_path)
    assert len(SA1BReader(tmp_path, strict=False).problems) == 1


def test_bench_index_counts_placeholder_folder(tmp_path: Path) -> None:
    write_placeholder_sa1b(tmp_path / "root", 25, images_per_folder=10, list_file=tmp_path / "list.json")
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["sa_000000", "sa_000001", "sa_000002"]
    assert len(list((tmp_path / "root" / "sa_000002").iterdir())) == 10
    result = bench_index(tmp_path / "root")
    assert result["items"] == 25 and result["problems"] == 0
    assert result["items_per_s"] == pytest.approx(25 / result["index_seconds"])
    (tmp_path / "list.json").write_text(json.dumps(["sa_3.jpg", "sa_25.jpg", "sa_26.jpg"]))
    assert bench_index(tmp_path / "root", file_list=tmp_path / "list.json")["items"] == 2
    with pytest.raises(ValueError, match="unknown format 'mose'"):
        bench_index(tmp_path / "root", format="mose")


def test_reads_synthesized_sa1b(sa1b_root: Path) -> None:
    reader = SA1BReader(sa1b_root)
    assert reader.names == ["sa_1", "sa_2", "sa_3", "sa_4"]
    for i, video in enumerate(reader):
        annotations = reader.annotations(i)
        masks = video.masks(0)
        assert masks.ids() == sorted(a["id"] for a in annotations)
        decoded = masks.decode([a["id"] for a in annotations])
        assert decoded.sum(axis=(1, 2)).tolist() == [a["area"] for a in annotations]
        for mask, ann in zip(decoded, annotations):
            ys, xs = np.nonzero(mask)
            assert [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1] == pytest.approx(ann["bbox"])
        assert video.read_frame(0).shape[:2] == masks.size == (48, 64)

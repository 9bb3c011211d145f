"""COCOReader on tiny COCO instances files: polygons, RLE, uncompressed crowd RLE, and every bad-input case."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from samlab.data.formats import coco as coco_module
from samlab.data.formats.coco import COCOReader, annotation_problem, load_instances
from samlab.data.sampling import ClipSampler, load_clip
from samlab.errors import DataError
from samlab.masks import encode_rle

H, W = 10, 14


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE: run lengths of the column-major flattening, starting with a background run."""
    flat = mask.T.reshape(-1).astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        runs = [0, *runs]
    return {"size": [H, W], "counts": runs}


def box_mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


RLE_MASK = box_mask(1, 1, 4, 9) | box_mask(8, 6, 13, 8)
CROWD_MASK = box_mask(0, 0, 14, 2)


def dataset() -> dict[str, Any]:
    """Three images (one in a subfolder, one without annotations) and four annotations of all segmentation kinds."""
    return {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": W, "height": H},
            {"id": 2, "file_name": "sub/b.jpg", "width": W, "height": H},
            {"id": 3, "file_name": "c.jpg", "width": W, "height": H},
        ],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 1, "segmentation": [[2, 2, 9, 2, 9, 8, 2, 8]], "area": 42.0,
             "bbox": [2, 2, 7, 6], "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 2, "segmentation": encode_rle(RLE_MASK),
             "area": float(RLE_MASK.sum()), "bbox": [1, 1, 12, 8], "iscrowd": 0},
            {"id": 13, "image_id": 1, "category_id": 1, "segmentation": uncompressed_rle(CROWD_MASK),
             "area": float(CROWD_MASK.sum()), "bbox": [0, 0, 14, 2], "iscrowd": 1},
            {"id": 21, "image_id": 2, "category_id": 2, "segmentation": [[1, 1, 6, 1, 3, 7], [8, 2, 12, 2, 12, 6]],
             "area": 30.0, "bbox": [1, 1, 11, 6], "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "bird"}],
    }  # fmt: skip


def write_coco(root: Path, data: dict[str, Any]) -> Path:
    """Write the JPEG of every image entry (that has a file name) and the annotation JSON; returns the JSON path."""
    for image in data["images"]:
        path = root / "images" / image["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), np.full((H, W, 3), image["id"] * 40, dtype=np.uint8))
    ann_file = root / "instances.json"
    ann_file.write_text(json.dumps(data))
    return ann_file


@pytest.fixture
def coco_files(tmp_path: Path) -> tuple[Path, Path]:
    return write_coco(tmp_path, dataset()), tmp_path / "images"


def test_reads_polygon_rle_and_images_without_annotations(coco_files: tuple[Path, Path]) -> None:
    ann_file, image_root = coco_files
    reader = COCOReader(ann_file, image_root)
    oracle = COCO(str(ann_file))
    assert len(reader) == 3
    assert [v.name for v in reader] == ["a", "sub/b", "c"]
    assert reader[1].frame_path(0) == image_root / "sub" / "b.jpg"
    assert reader[1].read_frame(0)[0, 0].tolist() == [80, 80, 80]
    assert reader[0].source == str(ann_file) and reader[0].num_frames == 1 and reader[0].frame_index(0) == 0

    masks = reader[0].masks(0)
    assert masks.size == (H, W)
    assert masks.ids() == [11, 12]  # crowd annotation 13 is not an object
    assert reader[0].labels() == {11: 1, 12: 2}
    np.testing.assert_array_equal(masks.decode([11])[0], oracle.annToMask(oracle.anns[11]).astype(bool))
    np.testing.assert_array_equal(masks.decode([12])[0], RLE_MASK)
    np.testing.assert_array_equal(reader[1].masks(0).decode([21])[0], oracle.annToMask(oracle.anns[21]).astype(bool))
    assert reader[2].masks(0).ids() == [] and reader[2].labels() == {}

    assert reader.coco_image(1) == {"id": 2, "file_name": "sub/b.jpg", "width": W, "height": H}
    assert [a["id"] for a in reader.annotations(0)] == [11, 12, 13]
    assert reader.annotations(2) == []
    assert reader.extra == {}


def test_include_crowd_decodes_uncompressed_rle(coco_files: tuple[Path, Path]) -> None:
    reader = COCOReader(*coco_files, include_crowd=True)
    masks = reader[0].masks(0)
    assert masks.ids() == [11, 12, 13]
    np.testing.assert_array_equal(masks.decode([13])[0], CROWD_MASK)
    assert reader[0].labels()[13] == 1


def test_category_filter(coco_files: tuple[Path, Path]) -> None:
    reader = COCOReader(*coco_files, category_ids=[2])
    assert len(reader) == 3
    assert reader[0].masks(0).ids() == [12]
    assert [a["id"] for a in reader.annotations(0)] == [12]
    assert reader[1].labels() == {21: 2}
    with pytest.raises(DataError, match=r"instances\.json: category_ids \[9\] are not among its categories"):
        COCOReader(*coco_files, category_ids=[2, 9])


def test_sampled_clip_has_category_labels(coco_files: tuple[Path, Path]) -> None:
    video = COCOReader(*coco_files)[0]
    spec = ClipSampler(num_frames=1, max_num_objects=None).sample(video, np.random.default_rng(0))
    clip = load_clip(video, spec)
    assert clip.object_ids == [11, 12] and clip.labels == [1, 2]
    np.testing.assert_array_equal(clip.masks[0, 1], RLE_MASK)


def test_lists_each_image_folder_once(coco_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    listed = []
    real_listdir = os.listdir
    monkeypatch.setattr(coco_module.os, "listdir", lambda path: listed.append(Path(path)) or real_listdir(path))
    COCOReader(*coco_files)
    assert sorted(listed) == [coco_files[1], coco_files[1] / "sub"]


def _add(data: dict[str, Any], **fields: Any) -> None:
    ann = {"id": 99, "image_id": 3, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5]], "area": 8.0, "iscrowd": 0}
    ann.update(fields)
    data["annotations"].append(ann)


def _bad_rle_size(data: dict[str, Any]) -> None:
    _add(data, segmentation=encode_rle(np.ones((H + 1, W), dtype=bool)))


def _collinear(data: dict[str, Any]) -> None:
    _add(data, segmentation=[[1, 1, 3, 3, 5, 5]])
    del data["annotations"][-1]["area"]


BAD_ANNOTATIONS = {
    "unknown image": (lambda d: _add(d, image_id=7), "annotation 99: unknown or left-out image id 7"),
    "unknown category": (lambda d: _add(d, category_id=5), "annotation 99: unknown category id 5"),
    "degenerate polygon": (
        lambda d: _add(d, segmentation=[[1, 1, 5, 1, 5, 5], [2, 2, 4, 4]]),
        r"annotation 99: degenerate polygon with 2 point\(s\)",
    ),
    "zero area": (lambda d: _add(d, area=0), r"annotation 99: zero area \(0\)"),
    "zero-area polygon": (_collinear, "annotation 99: zero-area polygon"),
    "zero-area RLE": (lambda d: _add(d, segmentation=encode_rle(np.zeros((H, W)))), "annotation 99: zero-area RLE"),
    "RLE size": (_bad_rle_size, r"annotation 99: RLE size \[11, 14\] \(HxW\) differs from the image's"),
    "uncompressed RLE sum": (
        lambda d: _add(d, segmentation={"size": [H, W], "counts": [3, 4]}),
        "annotation 99: uncompressed RLE counts sum to 7",
    ),
    "zero-area box": (lambda d: _add(d, bbox=[1, 1, 0, 4]), r"annotation 99: zero-area box \[1, 1, 0, 4\]"),
    "malformed box": (lambda d: _add(d, bbox=[1, 1, 4]), r"annotation 99: bbox \[1, 1, 4\] is not \[x, y, w, h\]"),
    "repeated id": (lambda d: _add(d, id=11), "annotation 11: id appears twice"),
    "no segmentation": (lambda d: _add(d, segmentation=None), "annotation 99: segmentation is neither polygons"),
}


@pytest.mark.parametrize("case", BAD_ANNOTATIONS)
def test_bad_annotation(tmp_path: Path, case: str) -> None:
    mutate, message = BAD_ANNOTATIONS[case]
    data = dataset()
    mutate(data)
    ann_file = write_coco(tmp_path, data)
    with pytest.raises(DataError, match=f"instances\\.json: {message}"):
        COCOReader(ann_file, tmp_path / "images")
    reader = COCOReader(ann_file, tmp_path / "images", strict=False)
    assert len(reader.problems) == 1
    assert reader.problems[0].path == str(ann_file)
    assert reader.problems[0].message.startswith("annotation 99" if case != "repeated id" else "annotation 11")
    assert [[a["id"] for a in reader.annotations(i)] for i in range(3)] == [[11, 12, 13], [21], []]


def test_missing_image_file(tmp_path: Path) -> None:
    ann_file = write_coco(tmp_path, dataset())
    (tmp_path / "images" / "sub" / "b.jpg").unlink()
    with pytest.raises(DataError, match=r"images/sub/b\.jpg: image 2 of .*instances\.json is missing"):
        COCOReader(ann_file, tmp_path / "images")
    reader = COCOReader(ann_file, tmp_path / "images", strict=False)
    assert [v.name for v in reader] == ["a", "c"]
    assert [v.name for v in COCOReader(ann_file, tmp_path / "nowhere", check_files=False)] == ["a", "sub/b", "c"]
    # Its annotation 21 now points to a left-out image: a second problem.
    assert [p.path for p in reader.problems] == [str(tmp_path / "images" / "sub" / "b.jpg"), str(ann_file)]
    assert "annotation 21: unknown or left-out image id 2" in reader.problems[1].message


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"id": 4, "file_name": "a.jpg"}, "image entry 4 needs 'id', 'file_name' and positive 'width/height'"),
        ({"id": 1, "file_name": "c.jpg", "width": W, "height": H}, "image id 1 appears twice"),
    ],
)
def test_bad_image_entry(tmp_path: Path, entry: dict[str, Any], message: str) -> None:
    data = dataset()
    data["images"].append(entry)
    ann_file = write_coco(tmp_path, copy.deepcopy(data))
    with pytest.raises(DataError, match=f"instances\\.json: {message}"):
        COCOReader(ann_file, tmp_path / "images")
    reader = COCOReader(ann_file, tmp_path / "images", strict=False)
    assert len(reader) == 3 and [str(p) for p in reader.problems] == [f"{ann_file}: {message}"]


def test_unreadable_annotation_file(tmp_path: Path) -> None:
    ann_file = tmp_path / "instances.json"
    with pytest.raises(DataError, match=r"instances\.json: COCO annotation file is missing"):
        COCOReader(ann_file, tmp_path, strict=False)
    ann_file.write_text('{"images": [')
    with pytest.raises(DataError, match=r"instances\.json: corrupt COCO annotation JSON"):
        COCOReader(ann_file, tmp_path, strict=False)
    ann_file.write_text('{"images": [], "annotations": [], "categories": [{"name": "cat"}]}')
    with pytest.raises(DataError, match=r"instances\.json: category entry \{'name': 'cat'\} has no integer 'id'"):
        COCOReader(ann_file, tmp_path, strict=False)
    ann_file.write_text('{"images": [], "annotations": []}')
    with pytest.raises(DataError, match=r"instances\.json: not a COCO instances file \(no 'categories' list\)"):
        COCOReader(ann_file, tmp_path, strict=False)


def test_reads_synthesized_coco(coco_root: Path) -> None:
    ann_file = coco_root / "annotations" / "instances.json"
    reader = COCOReader(ann_file, coco_root / "images", include_crowd=True)
    data = json.loads(ann_file.read_text())
    assert len(reader) == len(data["images"]) == 4
    assert sum(len(reader.annotations(i)) for i in range(len(reader))) == len(data["annotations"])
    for i, video in enumerate(reader):
        annotations = reader.annotations(i)
        decoded = video.masks(0).decode([a["id"] for a in annotations])
        assert decoded.sum(axis=(1, 2)).tolist() == [a["area"] for a in annotations]
        assert video.labels() == {a["id"]: a["category_id"] for a in annotations}
        assert video.read_frame(0).shape[:2] == (48, 64)
    crowd = {a["id"] for i in range(len(reader)) for a in reader.annotations(i) if a["iscrowd"]}
    objects = {i for video in COCOReader(ann_file, coco_root / "images") for i in video.masks(0).ids()}
    assert crowd and objects and not crowd & objects
    assert len(objects) + len(crowd) == len(data["annotations"])


def test_annotation_problem_and_load_instances(coco_files: tuple[Path, Path]) -> None:
    data = load_instances(coco_files[0])
    images = {image["id"]: image for image in data["images"]}
    good = data["annotations"][0]
    assert annotation_problem(good, images, {1, 2}, set()) is None
    assert annotation_problem(good, images, {1, 2}, {11}) == "id appears twice"
    assert annotation_problem(good, images, {2}, set()) == "unknown category id 1"
    assert annotation_problem({**good, "bbox": [0, 0, 3, -1]}, images, {1}, set()) == "zero-area box [0, 0, 3, -1]"
    assert (
        annotation_problem({"id": 5}, images, {1}, set()) == "needs 'id', 'image_id', 'category_id' and 'segmentation'"
    )

"""rle2polygon: exact corner polygons, holes through zero-width cuts, parts and area threshold, the tool's IoU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from samlab.cli import main
from samlab.errors import DataError
from samlab.masks import decode_segmentation, encode_rle, mask_iou
from samlab.tools.coco_polygons import mask_to_polygons, rle_to_polygons

H, W = 40, 60


def ring() -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[5:35, 5:35] = True
    mask[12:28, 12:28] = False
    return mask


def parts() -> np.ndarray:
    """A disk with two holes, a diagonal bar, an island inside one hole and a 2-pixel speck."""
    mask = np.zeros((H, W), dtype=np.uint8)
    cv2.circle(mask, (20, 20), 15, 1, -1)
    cv2.circle(mask, (14, 20), 4, 0, -1)
    cv2.rectangle(mask, (22, 14), (30, 26), 0, -1)
    mask[19:22, 25:28] = 1  # island inside the rectangular hole
    cv2.line(mask, (40, 5), (55, 35), 1, 3)
    mask[2, 57:59] = 1
    return mask.astype(bool)


def test_ring_rerasterises_to_a_ring() -> None:
    polygons, dropped = mask_to_polygons(ring())
    assert len(polygons) == 1 and dropped == 0
    redrawn = decode_segmentation(polygons, H, W)
    np.testing.assert_array_equal(redrawn, ring())
    assert not redrawn[20, 20]  # the hole is empty


def test_parts_holes_and_min_area() -> None:
    mask = parts()
    polygons, dropped = mask_to_polygons(mask)
    assert len(polygons) == 4 and dropped == 0  # disk, island, bar, speck
    np.testing.assert_array_equal(decode_segmentation(polygons, H, W), mask)
    kept, dropped = mask_to_polygons(mask, min_area=3)
    assert len(kept) == 3 and dropped == 1
    speck = np.zeros_like(mask)
    speck[2, 57:59] = True
    np.testing.assert_array_equal(decode_segmentation(kept, H, W), mask & ~speck)


def test_exact_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        height, width = (int(v) for v in rng.integers(3, 30, size=2))
        mask = rng.random((height, width)) < rng.uniform(0.2, 0.8)
        polygons, _ = mask_to_polygons(mask)
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in polygons)
        np.testing.assert_array_equal(decode_segmentation(polygons, height, width), mask)


def test_tolerance_simplifies_and_drops_degenerate_parts() -> None:
    disk = np.zeros((H, W), dtype=np.uint8)
    cv2.circle(disk, (30, 20), 15, 1, -1)
    exact, _ = mask_to_polygons(disk.astype(bool))
    simple, _ = mask_to_polygons(disk.astype(bool), tolerance=1.0)
    assert len(simple[0]) < len(exact[0]) / 2
    assert mask_iou(decode_segmentation(simple, H, W), disk.astype(bool)) > 0.95
    thin = np.zeros((H, W), dtype=bool)
    thin[10, 5:30] = True  # a 1-pixel line: its 4 corners simplify to 2 points
    assert mask_to_polygons(thin, tolerance=2.0) == ([], 1)


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    flat = mask.T.reshape(-1).astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return {"size": [H, W], "counts": [0, *runs] if flat[0] else runs}


def dataset() -> dict[str, Any]:
    speck = np.zeros((H, W), dtype=bool)
    speck[30:32, 50:52] = True
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": encode_rle(ring()), "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "segmentation": uncompressed_rle(parts()), "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 7]], "area": 24.0, "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": 2, "segmentation": encode_rle(speck), "iscrowd": 0},
        {"id": 5, "image_id": 2, "category_id": 2, "segmentation": uncompressed_rle(ring()), "iscrowd": 1},
    ]
    return {
        "info": {"description": "rle2polygon test"},
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": W, "height": H} for i in (1, 2)],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "ring"}, {"id": 2, "name": "parts"}],
    }


def test_rle_to_polygons_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.json"
    source.write_text(json.dumps(dataset()))
    out = tmp_path / "out.json"
    assert main(["data", "rle2polygon", str(source), str(out), "--min-area", "5", "--tolerance", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["annotations"] == 4 and result["converted"] == 3 and result["removed"] == 1
    assert result["dropped_parts"] == 2 and result["skipped"] == 0  # parts' speck and annotation 4

    converted = json.loads(out.read_text())
    assert converted["info"] == {"description": "rle2polygon test"}
    by_id = {a["id"]: a for a in converted["annotations"]}
    assert sorted(by_id) == [1, 2, 3, 5]
    assert by_id[3]["segmentation"] == [[1, 1, 9, 1, 9, 7]]  # polygons kept as they are
    assert by_id[5]["segmentation"] == uncompressed_rle(ring())  # crowd RLE kept
    # The printed IoU equals an independent computation: pycocotools' rasterisation against the original masks.
    oracle = COCO(str(out))
    originals = {1: ring(), 2: parts()}
    ious = [mask_iou(oracle.annToMask(oracle.anns[i]).astype(bool), originals[i]) for i in (1, 2)]
    assert result["mean_iou"] == pytest.approx(np.mean(ious), abs=1e-12)
    assert result["mean_iou"] > 0.95
    for i in (1, 2):
        redrawn = oracle.annToMask(oracle.anns[i])
        assert by_id[i]["area"] == redrawn.sum()
        x, y, w, h = by_id[i]["bbox"]
        rows, cols = np.flatnonzero(redrawn.any(1)), np.flatnonzero(redrawn.any(0))
        assert [x, y, w, h] == [cols[0], rows[0], cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]]

    exact = rle_to_polygons(source, tmp_path / "exact.json", progress=False)
    assert exact["mean_iou"] == 1.0 and exact["removed"] == 0 and exact["converted"] == 3


def test_bad_annotation_names_its_id(tmp_path: Path) -> None:
    data = dataset()
    data["annotations"][1]["image_id"] = 9
    source = tmp_path / "in.json"
    source.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"in\.json: annotation 2: unknown or left-out image id 9"):
        rle_to_polygons(source, tmp_path / "out.json", progress=False)
    result = rle_to_polygons(source, tmp_path / "out.json", strict=False, progress=False)
    assert result["skipped"] == 1 and result["annotations"] == 4

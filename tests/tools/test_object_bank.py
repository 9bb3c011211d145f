"""extract-objects and ObjectBank: RGBA cut-outs equal to the image and mask crops, metadata, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from samlab.cli import main
from samlab.data.formats.coco import COCOReader
from samlab.errors import DataError
from samlab.tools.object_bank import ObjectBank, extract_objects


def test_extract_objects_and_load_bank(coco_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ann_file, images = coco_root / "annotations" / "instances.json", coco_root / "images"
    out = tmp_path / "bank"
    assert main(["data", "extract-objects", str(ann_file), str(images), str(out), "--min-area", "100", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)

    reader = COCOReader(ann_file, images)
    expected = {}
    for i, video in enumerate(reader):
        ids = video.masks(0).ids()
        for ann_id, mask in zip(ids, video.masks(0).decode(ids), strict=True):
            expected[ann_id] = (i, mask)
    kept = {a for a, (_, m) in expected.items() if m.sum() >= 100}
    assert counts == {"objects": len(kept), "too_small": len(expected) - len(kept), "skipped": 0}
    assert kept and counts["too_small"] > 0  # the threshold matters on this data

    index = json.loads((out / "objects.json").read_text())
    assert {r["ann_id"] for r in index["objects"]} == kept
    assert [c["name"] for c in index["categories"]] == ["ellipse", "polygon"]
    bank = ObjectBank(out)
    assert len(bank) == len(kept)
    for k, record in enumerate(bank.records):
        i, mask = expected[record["ann_id"]]
        image = reader[i].read_frame(0)
        x, y, w, h = record["crop"]
        bx, by, bw, bh = record["bbox"]
        assert record["area"] == mask.sum() and record["image_id"] == reader.coco_image(i)["id"]
        assert (
            record["source_image"] == reader.coco_image(i)["file_name"] and record["file"] == f"{record['ann_id']}.png"
        )
        assert record["category_name"] == ("ellipse", "polygon")[record["category_id"] - 1]
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert [bx, by, bw, bh] == [cols[0], rows[0], cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]]
        assert x == max(0, bx - 2) and x + w == min(64, bx + bw + 2)  # 2-pixel margin clipped to the image
        obj = bank[k]
        assert obj.ann_id == record["ann_id"] and obj.category_id == reader[i].labels()[obj.ann_id]
        np.testing.assert_array_equal(obj.mask, mask[y : y + h, x : x + w])
        np.testing.assert_array_equal(obj.rgb, image[y : y + h, x : x + w])
    ellipses = ObjectBank(out, category_ids=[1])
    assert {r["category_id"] for r in ellipses.records} == {1} and 0 < len(ellipses) < len(bank)


def test_bank_errors(coco_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"objects\.json: object bank index is missing"):
        ObjectBank(tmp_path)
    out = tmp_path / "bank"
    extract_objects(coco_root / "annotations" / "instances.json", coco_root / "images", out, progress=False)
    with pytest.raises(DataError, match=r"objects\.json: the object bank has no object of those categories"):
        ObjectBank(out, category_ids=[7])
    bank = ObjectBank(out)
    (out / bank.records[0]["file"]).unlink()
    with pytest.raises(
        DataError, match=rf"{bank.records[0]['ann_id']}\.png: object {bank.records[0]['ann_id']}: missing"
    ):
        bank[0]


def test_missing_image_is_named(coco_root: Path, tmp_path: Path) -> None:
    data = json.loads((coco_root / "annotations" / "instances.json").read_text())
    data["images"][0]["file_name"] = "gone.jpg"
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"images/gone\.jpg: image 1 of .*instances\.json is missing"):
        extract_objects(ann_file, coco_root / "images", tmp_path / "bank", progress=False)
    counts = extract_objects(ann_file, coco_root / "images", tmp_path / "bank", strict=False, progress=False)
    annotations_of_image_1 = sum(a["image_id"] == 1 for a in data["annotations"])
    assert counts["skipped"] == 1 + annotations_of_image_1  # the image, then each of its annotations

"""merge: renumbered ids, categories checked, file_name collisions, info/licenses kept, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pycocotools.coco import COCO

from samlab.cli import main
from samlab.errors import DataError
from samlab.tools.coco_merge import merge_coco

CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}]


def coco(names: list[str], first_ann_id: int, categories: list[dict[str, Any]] = CATEGORIES) -> dict[str, Any]:
    """Images ``names`` with ids 10, 11, ...; two annotations per image (categories 1 and 3)."""
    images = [{"id": 10 + i, "file_name": name, "width": 20, "height": 10} for i, name in enumerate(names)]
    annotations = [
        {
            "id": first_ann_id + 2 * i + j,
            "image_id": image["id"],
            "category_id": (1, 3)[j],
            "segmentation": [[1, 1, 5 + j, 1, 5 + j, 6]],
            "area": 10.0 + j,
            "bbox": [1, 1, 4 + j, 5],
            "iscrowd": 0,
        }
        for i, image in enumerate(images)
        for j in range(2)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_merge_renumbers_and_keeps_everything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = coco(["a.jpg", "b.jpg"], first_ann_id=1)
    train |= {"info": {"year": 2017}, "licenses": [{"id": 1, "name": "CC"}]}
    val = coco(["c.jpg"], first_ann_id=1, categories=[*CATEGORIES, {"id": 4, "name": "bird"}])
    val["licenses"] = [{"id": 1, "name": "other"}, {"id": 2, "name": "MIT"}]
    inputs = [write(tmp_path / "train.json", train), write(tmp_path / "val.json", val)]
    out = tmp_path / "merged.json"
    assert main(["data", "merge", *map(str, inputs), "-o", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"images": 3, "annotations": 6, "categories": 3, "skipped": 0}

    merged = json.loads(out.read_text())
    assert merged["info"] == {"year": 2017}
    assert merged["licenses"] == [{"id": 1, "name": "CC"}, {"id": 2, "name": "MIT"}]
    assert [c["name"] for c in merged["categories"]] == ["cat", "dog", "bird"]
    assert [(i["id"], i["file_name"]) for i in merged["images"]] == [(1, "a.jpg"), (2, "b.jpg"), (3, "c.jpg")]
    assert [a["id"] for a in merged["annotations"]] == [1, 2, 3, 4, 5, 6]
    assert [a["image_id"] for a in merged["annotations"]] == [1, 1, 2, 2, 3, 3]
    # Everything else of an annotation is kept: the val image's second annotation is val's annotation 2.
    assert {k: v for k, v in merged["annotations"][5].items() if k not in ("id", "image_id")} == {
        k: v for k, v in val["annotations"][1].items() if k not in ("id", "image_id")
    }
    oracle = COCO(str(out))  # pycocotools indexes it: ids are unique and consistent
    assert len(oracle.getAnnIds(imgIds=[3])) == 2


def test_file_name_collision_error_or_prefix(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", coco(["x.jpg"], first_ann_id=1))
    b = write(tmp_path / "b.json", coco(["y.jpg", "x.jpg"], first_ann_id=7))
    with pytest.raises(DataError, match=r"b\.json: image file_name 'x\.jpg' is also in .*a\.json"):
        merge_coco([a, b], tmp_path / "out.json", progress=False)
    merge_coco([a, b], tmp_path / "out.json", prefixes=["train/", "val/"], progress=False)
    names = [i["file_name"] for i in json.loads((tmp_path / "out.json").read_text())["images"]]
    assert names == ["train/x.jpg", "val/y.jpg", "val/x.jpg"]
    with pytest.raises(ValueError, match="2 inputs but 1 prefixes"):
        merge_coco([a, b], tmp_path / "out.json", prefixes=["train/"], progress=False)


@pytest.mark.parametrize(
    ("categories", "message"),
    [
        ([{"id": 1, "name": "cat"}, {"id": 3, "name": "horse"}], r"category 3 is named 'horse' here but 'dog' in"),
        ([{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 5, "name": "cat"}], "category 'cat' has id 5"),
    ],
)
def test_categories_must_agree(tmp_path: Path, categories: list[dict[str, Any]], message: str) -> None:
    a = write(tmp_path / "a.json", coco(["x.jpg"], first_ann_id=1))
    b = write(tmp_path / "b.json", coco(["y.jpg"], first_ann_id=1, categories=categories))
    with pytest.raises(DataError, match=rf"b\.json: {message}.*a\.json"):
        merge_coco([a, b], tmp_path / "out.json", progress=False)


def test_bad_annotations_error_or_are_skipped(tmp_path: Path) -> None:
    data = coco(["x.jpg", "y.jpg"], first_ann_id=1)
    data["annotations"][1]["category_id"] = 8
    data["annotations"][2]["segmentation"] = [[1, 1, 4, 4]]
    data["annotations"][3]["bbox"] = [1, 1, 0, 0]
    bad = write(tmp_path / "bad.json", data)
    with pytest.raises(DataError, match=r"bad\.json: annotation 2: unknown category id 8"):
        merge_coco([bad], tmp_path / "out.json", progress=False)
    assert merge_coco([bad], tmp_path / "out.json", strict=False, progress=False)["skipped"] == 3
    merged = json.loads((tmp_path / "out.json").read_text())
    assert [(a["id"], a["image_id"], a["category_id"]) for a in merged["annotations"]] == [(1, 1, 1)]

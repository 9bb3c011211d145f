import contextlib
import importlib.util
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samlab.cli import main
from samlab.masks import decode_segmentation, encode_rle, mask_to_box


@pytest.fixture
def results_file(coco_root, tmp_path):
    """A prediction per instance, shifted by 0-3 pixels, with a false positive; masks and boxes."""
    data = json.loads((coco_root / "annotations" / "instances.json").read_text())
    images = {i["id"]: i for i in data["images"]}
    results = []
    for k, ann in enumerate(data["annotations"]):
        image = images[ann["image_id"]]
        mask = np.roll(decode_segmentation(ann["segmentation"], image["height"], image["width"]), k % 4, axis=0)
        x0, y0, x1, y1 = (float(v) for v in mask_to_box(mask))
        results.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "segmentation": encode_rle(mask),
                "bbox": [x0 + k % 2, y0, x1 - x0 + 24 * (k % 2), y1 - y0 + 20 * (k % 2)],  # box area != mask area
                "score": 1.0 - 0.03 * k,
            }
        )
    path = tmp_path / "result.segm.json"
    path.write_text(json.dumps(results))
    return path


def _pycocotools(gt_file, pred_file, iou_type):
    """The oracle: pycocotools itself on the same files (results with a bbox take their area from it)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        ev = COCOeval(gt, gt.loadRes(str(pred_file)), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats.tolist()


@pytest.mark.parametrize(
    "engine",
    [
        "pycocotools",
        pytest.param(
            "faster_coco_eval",
            marks=pytest.mark.skipif(importlib.util.find_spec("faster_coco_eval") is None, reason="not installed"),
        ),
    ],
)
@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_eval_coco_equals_pycocotools(coco_root, results_file, capsys, iou_type, engine):
    gt_file = coco_root / "annotations" / "instances.json"
    command = ["eval", "coco", "--gt", str(gt_file), "--pred", str(results_file), "--iou-type", iou_type, "--json"]
    assert main([*command, "--engine", engine]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = _pycocotools(gt_file, results_file, iou_type)
    assert printed["stats"] == pytest.approx(expected, abs=1e-12, rel=1e-12)
    assert printed["AP"] == expected[0] and printed["AP50"] == expected[1] and printed["ARl"] == expected[11]
    assert 0.0 < expected[0] < 1.0  # a perturbed prediction: neither perfect nor useless


def test_eval_coco_table_and_bad_file(coco_root, results_file, tmp_path, capsys):
    gt_file = coco_root / "annotations" / "instances.json"
    assert main(["eval", "coco", "--gt", str(gt_file), "--pred", str(results_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12 and lines[0].startswith("segm    AP:")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"not": "a list"}))
    assert main(["eval", "coco", "--gt", str(gt_file), "--pred", str(broken)]) == 2
    assert "broken.json: not a COCO results file" in capsys.readouterr().err


def test_eval_coco_takes_the_area_from_the_bbox_as_pycocotools(coco_root, results_file, tmp_path, capsys):
    """The known difference of samlab before issue 13: with a bbox, pycocotools' area is the box's (w * h) also for
    segm; without one, the mask's. Same matches, other small/medium/large ranges."""
    gt_file = coco_root / "annotations" / "instances.json"
    no_box = tmp_path / "no_box.json"
    no_box.write_text(
        json.dumps([{k: v for k, v in r.items() if k != "bbox"} for r in json.loads(results_file.read_text())])
    )
    printed = {}
    for name, path in (("box", results_file), ("mask", no_box)):
        assert main(["eval", "coco", "--gt", str(gt_file), "--pred", str(path), "--json"]) == 0
        printed[name] = json.loads(capsys.readouterr().out)["stats"]
        assert printed[name] == pytest.approx(_pycocotools(gt_file, path, "segm"), abs=1e-12, rel=1e-12)
    assert printed["box"][:3] == printed["mask"][:3] and printed["box"] != printed["mask"]

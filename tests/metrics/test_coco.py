import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samlab.errors import DataError
from samlab.masks import decode_segmentation, encode_rle
from samlab.metrics.coco import COCOPromptEval, coco_stats, load_coco_gt, load_coco_results


def _perturbed(mask: np.ndarray, shift: int) -> np.ndarray:
    return np.roll(mask, shift, axis=1)


def _reference(gt_file, results, iou_type, image_ids=None):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dt = gt.loadRes([dict(r) for r in results])
        ev = COCOeval(gt, dt, iou_type)
        if image_ids is not None:
            ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def _predictions(coco_root):
    gt = load_coco_gt(coco_root / "annotations" / "instances.json")
    ids, masks, scores = [], [], []
    for k, ann in enumerate(a for a in gt.dataset["annotations"] if not a["iscrowd"]):
        image = gt.imgs[ann["image_id"]]
        truth = decode_segmentation(ann["segmentation"], image["height"], image["width"])
        ids.append(ann["id"])
        masks.append(_perturbed(truth, k % 3))
        scores.append(0.9 - 0.05 * k)
    return gt, ids, masks, scores


def test_prompt_eval_equals_cocoeval_run_directly(coco_root):
    gt, ids, masks, scores = _predictions(coco_root)
    metric = COCOPromptEval(gt)
    half = len(ids) // 2
    metric.update(ids[:half], np.stack(masks[:half]), scores[:half])
    metric.update(ids[half:], np.stack(masks[half:]), scores[half:])
    metric.update(ids[:1], np.stack(masks[:1]), scores[:1])  # a repeat (DDP padding) counts once
    assert len(metric.results) == len(ids)
    out = metric.compute()
    image_ids = sorted({r["image_id"] for r in metric.results})
    for iou_type in ("segm", "bbox"):
        ref = _reference(coco_root / "annotations" / "instances.json", metric.results, iou_type, image_ids)
        assert [out[f"{iou_type}_{n}"] for n in ("AP", "AP50", "AP75", "ARs", "AR100")] == pytest.approx(
            ref[[0, 1, 2, 9, 8]].tolist()
        )
    # shifted by 0, 1 or 2 pixels: below 1 and above 0.5 for these blobs; exact IoU by hand for the first
    first = gt.anns[ids[0]]
    truth = decode_segmentation(first["segmentation"], *[gt.imgs[first["image_id"]][k] for k in ("height", "width")])
    expected_first = (masks[0] & truth).sum() / (masks[0] | truth).sum()
    assert expected_first == 1.0
    assert 0.5 < out["mIoU"] < 1.0
    assert 0.0 < out["segm_AP"] < 1.0


def test_prompt_eval_checks_inputs(coco_root):
    gt, ids, masks, _ = _predictions(coco_root)
    metric = COCOPromptEval(gt)
    with pytest.raises(ValueError, match="not in the ground truth"):
        metric.update([99999], masks[:1], [0.5])
    with pytest.raises(ValueError, match="image"):
        metric.update(ids[:1], np.zeros((1, 5, 5), dtype=bool), [0.5])
    assert metric.compute()["segm_AP"] == 0.0 and metric.compute()["mIoU"] == 0.0


def test_perfect_predictions_give_ap_one(coco_root):
    gt, ids, _, _ = _predictions(coco_root)
    metric = COCOPromptEval(gt)
    for ann_id in ids:
        ann = gt.anns[ann_id]
        image = gt.imgs[ann["image_id"]]
        metric.update([ann_id], decode_segmentation(ann["segmentation"], image["height"], image["width"])[None], [1.0])
    out = metric.compute()
    assert out["segm_AP"] == pytest.approx(1.0) and out["mIoU"] == pytest.approx(1.0)


def test_loaders_name_the_bad_file(tmp_path, coco_root):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"bad\.json"):
        load_coco_gt(bad)
    with pytest.raises(DataError, match="missing"):
        load_coco_gt(tmp_path / "nope.json")
    gt = load_coco_gt(coco_root / "annotations" / "instances.json")
    res = tmp_path / "res.json"
    res.write_text(json.dumps([{"image_id": 12345, "category_id": 1, "score": 1.0, "bbox": [0, 0, 1, 1]}]))
    with pytest.raises(DataError, match=r"res\.json: result 0 image_id 12345"):
        load_coco_results(gt, res, "bbox")
    res.write_text(
        json.dumps([{"image_id": 1, "category_id": 1, "score": 1.0, "segmentation": encode_rle(np.ones((3, 3)))}])
    )
    with pytest.raises(DataError, match="RLE size"):
        load_coco_results(gt, res, "segm")
    assert coco_stats(gt, load_coco_results(gt, [], "segm")).tolist() == [0.0] * 12

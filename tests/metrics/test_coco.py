"""COCO AP equals pycocotools on every input: pycocotools' own ``COCO.loadRes`` + ``COCOeval``, run here on the
same files, is the oracle (it is the reference evaluator), for both engines samlab can run."""

import contextlib
import importlib.util
import io
import json
import warnings

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samlab.errors import DataError
from samlab.masks import decode_segmentation, encode_rle
from samlab.metrics.coco import (
    ENGINES,
    COCOPromptEval,
    bbox_results,
    coco_stats,
    default_engine,
    detections_by_image,
    image_ids_by_name,
    load_coco_gt,
    load_coco_results,
)

FASTER = importlib.util.find_spec("faster_coco_eval") is not None
ENGINE_PARAMS = [
    pytest.param(e, marks=pytest.mark.skipif(e == "faster_coco_eval" and not FASTER, reason="not installed"))
    for e in ENGINES
]


def _equal(got, expected, engine):
    """pycocotools is equal to itself bit for bit; faster-coco-eval sums in C++ (last-bit differences)."""
    if engine == "pycocotools":
        return list(got) == list(expected)
    return list(got) == pytest.approx(list(expected), rel=1e-12, abs=1e-12)


def _rle(mask):
    return encode_rle(mask.astype(np.uint8))


def _uncompressed(mask):
    flat = mask.astype(np.uint8).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"size": list(mask.shape), "counts": counts}


def _blob(rng, height, width):
    mask = np.zeros((height, width), dtype=bool)
    y0, x0 = rng.integers(0, height - 4), rng.integers(0, width - 4)
    mask[y0 : y0 + rng.integers(3, height - y0 + 1), x0 : x0 + rng.integers(3, width - x0 + 1)] = True
    return mask


@pytest.fixture(scope="module")
def hard_set(tmp_path_factory):
    """GT and results with every case COCOeval distinguishes: small/medium/large areas, crowd GT (uncompressed
    RLE), polygon GT, an image without GT, an image with GT but no result, results on an image without GT, one
    image with 130 results (over maxDets 100), a category without GT and one without results, ties in score, and
    result boxes that differ from the masks' boxes (so the box area of loadRes differs from the mask area)."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("hard_coco")
    images, annotations, results = [], [], []
    sizes = [(40, 60), (120, 160), (200, 260), (64, 64), (150, 90), (90, 150), (48, 48), (220, 180)]
    for image_id, (height, width) in enumerate(sizes, start=1):
        images.append({"id": image_id, "file_name": f"d/{image_id:03d}.jpg", "height": height, "width": width})
        if image_id == 4:  # no ground truth; two false positives
            for _ in range(2):
                results.append((image_id, 1, _blob(rng, height, width), 0.5))
            continue
        num = 130 if image_id == 6 else int(rng.integers(2, 7))
        for k in range(num if image_id != 6 else 6):
            mask = _blob(rng, height, width)
            category = int(rng.integers(1, 4))
            crowd = int(k == 0 and image_id in (2, 7))
            if crowd:
                segmentation = _uncompressed(mask)
            elif k == 1 and image_id == 3:
                ys, xs = np.nonzero(mask)
                x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
                segmentation = [
                    [float(x0), float(y0), float(x1), float(y0), float(x1), float(y1), float(x0), float(y1)]
                ]
                mask = decode_segmentation(segmentation, height, width)
            else:
                segmentation = _rle(mask)
            ys, xs = np.nonzero(mask)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "segmentation": segmentation,
                    "area": float(mask.sum()),
                    "bbox": [
                        float(xs.min()),
                        float(ys.min()),
                        float(xs.max() - xs.min() + 1),
                        float(ys.max() - ys.min() + 1),
                    ],
                    "iscrowd": crowd,
                }
            )
            if image_id == 5:  # ground truth, no result
                continue
            shifted = np.roll(mask, int(rng.integers(-4, 5)), axis=int(rng.integers(0, 2)))
            results.append((image_id, category, shifted, float(np.round(rng.random(), 1))))
        if image_id == 6:
            for _ in range(130 - 6):
                results.append((image_id, int(rng.integers(1, 4)), _blob(rng, height, width), float(rng.random())))
    entries = []
    for image_id, category, mask, score in results:
        ys, xs = np.nonzero(mask)
        w, h = float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)
        grow = float(rng.integers(0, 12))  # a box larger than the mask: its area decides the range
        entries.append(
            {
                "image_id": image_id,
                "category_id": category,
                "segmentation": _rle(mask),
                "bbox": [float(xs.min()), float(ys.min()), w + grow, h + grow],
                "score": score,
            }
        )
    categories = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3, 4)]
    gt_file = root / "instances.json"
    gt_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    with_box = root / "with_box.json"
    with_box.write_text(json.dumps(entries))
    without_box = root / "without_box.json"
    without_box.write_text(json.dumps([{k: v for k, v in e.items() if k != "bbox"} for e in entries]))
    box_only = root / "box_only.json"
    box_only.write_text(json.dumps([{k: v for k, v in e.items() if k != "segmentation"} for e in entries]))
    return {"gt": gt_file, "with_box": with_box, "without_box": without_box, "box_only": box_only}


def _pycocotools(gt_file, results_file, iou_type, image_ids=None, category_ids=None):
    """The oracle: pycocotools exactly as its README runs it."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        evaluator = COCOeval(gt, gt.loadRes(str(results_file)), iou_type)
        if image_ids is not None:
            evaluator.params.imgIds = image_ids
        if category_ids is not None:
            evaluator.params.catIds = category_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
@pytest.mark.parametrize("results", ["with_box", "without_box", "box_only"])
def test_coco_stats_equal_pycocotools_on_every_input(hard_set, engine, iou_type, results):
    expected = _pycocotools(hard_set["gt"], hard_set[results], iou_type)
    gt = load_coco_gt(hard_set["gt"])
    stats = coco_stats(gt, load_coco_results(gt, hard_set[results]), iou_type, engine=engine)
    assert _equal(stats, expected, engine)
    assert 0.0 < expected[0] < 1.0 and -1.0 not in expected[:3]


def test_box_area_decides_the_segm_ranges_as_in_pycocotools(hard_set):
    gt = load_coco_gt(hard_set["gt"])
    with_box = coco_stats(gt, load_coco_results(gt, hard_set["with_box"]), "segm")
    without_box = coco_stats(gt, load_coco_results(gt, hard_set["without_box"]), "segm")
    assert with_box[:3].tolist() == without_box[:3].tolist()  # matching does not use the area
    assert with_box[3:6].tolist() != without_box[3:6].tolist()  # the ranges do: box area vs mask area


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_restricted_images_and_categories_equal_pycocotools(hard_set, engine):
    gt = load_coco_gt(hard_set["gt"])
    dt = load_coco_results(gt, hard_set["with_box"])
    cases = (([1, 2, 5], None), ([4], None), ([6], None), (None, [2]), (None, [4]), ([6, 7], [1, 3]))
    for image_ids, category_ids in cases:  # [6]: 130 results on one image, over maxDets 100
        expected = _pycocotools(hard_set["gt"], hard_set["with_box"], "segm", image_ids, category_ids)
        got = coco_stats(gt, dt, "segm", image_ids=image_ids, category_ids=category_ids, engine=engine)
        assert _equal(got, expected, engine), (image_ids, category_ids)


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_no_detection_is_what_cocoeval_gives_for_an_empty_result_set(hard_set, engine):
    gt = load_coco_gt(hard_set["gt"])
    with contextlib.redirect_stdout(io.StringIO()):
        reference_gt = COCO(str(hard_set["gt"]))
        empty = COCO()
        empty.dataset = {"images": reference_gt.dataset["images"], "categories": reference_gt.dataset["categories"]}
        empty.createIndex()
        evaluator = COCOeval(reference_gt, empty, "segm")
        evaluator.params.imgIds = [1, 2]  # the smallest two images: no large instance, -1 there
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    got = coco_stats(gt, load_coco_results(gt, []), "segm", image_ids=[1, 2], engine=engine)
    assert _equal(got, evaluator.stats, engine)
    assert 0.0 in got and -1.0 in got


def test_default_engine_is_faster_coco_eval_when_installed():
    assert default_engine() == ("faster_coco_eval" if FASTER else "pycocotools")
    with pytest.raises(ValueError, match="engine"):
        coco_stats(COCO(), COCO(), "segm", engine="detectron2")


def test_unknown_result_category_warns_and_counts_as_pycocotools(hard_set, tmp_path):
    entries = json.loads(hard_set["with_box"].read_text())
    entries[3]["category_id"] = 99
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(entries))
    gt = load_coco_gt(hard_set["gt"])
    with pytest.warns(UserWarning, match=r"odd\.json.*\[99\]"):
        dt = load_coco_results(gt, path)
    assert coco_stats(gt, dt, engine="pycocotools").tolist() == _pycocotools(hard_set["gt"], path, "segm").tolist()


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
        load_coco_results(gt, res)
    res.write_text(
        json.dumps([{"image_id": 1, "category_id": 1, "score": 1.0, "segmentation": encode_rle(np.ones((3, 3)))}])
    )
    with pytest.raises(DataError, match="RLE size"):
        load_coco_results(gt, res)
    box = {"image_id": 1, "category_id": 1, "score": 1.0, "bbox": [0, 0, 2, 2]}
    res.write_text(json.dumps([box, {k: v for k, v in box.items() if k != "bbox"}]))
    with pytest.raises(DataError, match=r"result 1 has no 'bbox'.*first result has one"):
        load_coco_results(gt, res)
    res.write_text(json.dumps([{k: v for k, v in box.items() if k != "bbox"}]))
    with pytest.raises(DataError, match=r"res\.json: result 0 has no 'bbox'"):
        detections_by_image(gt, res)


def _predictions(coco_root):
    gt = load_coco_gt(coco_root / "annotations" / "instances.json")
    ids, masks, scores = [], [], []
    for k, ann in enumerate(a for a in gt.dataset["annotations"] if not a["iscrowd"]):
        image = gt.imgs[ann["image_id"]]
        truth = decode_segmentation(ann["segmentation"], image["height"], image["width"])
        ids.append(ann["id"])
        masks.append(np.roll(truth, k % 3, axis=1))
        scores.append(0.9 - 0.05 * k)
    return gt, ids, masks, scores


def test_prompt_eval_equals_pycocotools_on_its_results(coco_root, tmp_path):
    gt, ids, masks, scores = _predictions(coco_root)
    metric = COCOPromptEval(gt)
    half = len(ids) // 2
    metric.update(ids[:half], np.stack(masks[:half]), scores[:half])
    metric.update(ids[half:], np.stack(masks[half:]), scores[half:])
    metric.update(ids[:1], np.stack(masks[:1]), scores[:1])  # a repeat (DDP padding) counts once
    assert len(metric.results) == len(ids)
    image_ids = sorted({r["image_id"] for r in metric.results})
    metric.add_images(image_ids)
    out = metric.compute()
    path = tmp_path / "results.json"
    path.write_text(json.dumps(metric.results))
    for iou_type in ("segm", "bbox"):
        expected = _pycocotools(coco_root / "annotations" / "instances.json", path, iou_type, image_ids)
        assert [out[f"{iou_type}_{name}"] for name in ("AP", "AP50", "AP75", "ARs", "AR100")] == pytest.approx(
            expected[[0, 1, 2, 9, 8]].tolist(), abs=0
        )
    assert 0.5 < out["mIoU"] < 1.0 and 0.0 < out["segm_AP"] < 1.0


def test_prompt_eval_counts_evaluated_images_without_predictions(coco_root):
    gt, ids, masks, _ = _predictions(coco_root)
    metric = COCOPromptEval(gt)
    first_image = gt.anns[ids[0]]["image_id"]
    own = [i for i, ann_id in enumerate(ids) if gt.anns[ann_id]["image_id"] == first_image]
    metric.update([ids[i] for i in own], np.stack([masks[i] for i in own]), [1.0] * len(own))
    alone = metric.compute()["segm_AR100"]
    other = next(i for i in gt.imgs if i != first_image and gt.getAnnIds(imgIds=[i], iscrowd=False))
    metric.add_images([other])  # evaluated, nothing predicted: its instances are misses
    assert metric.compute()["segm_AR100"] < alone


def test_prompt_eval_detections_and_bbox_results(coco_root, tmp_path):
    gt, ids, masks, _ = _predictions(coco_root)
    anns = [gt.anns[i] for i in ids]
    detections = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9 - 0.1 * k}
        for k, a in enumerate(anns)
    ]
    path = tmp_path / "detections.json"
    path.write_text(json.dumps(detections))
    by_image = detections_by_image(gt, path)
    assert sorted(by_image) == sorted({a["image_id"] for a in anns})
    flat = [d for image_id in sorted(by_image) for d in by_image[image_id]]
    assert sorted(d["id"] for d in flat) == list(range(1, len(anns) + 1))
    metric = COCOPromptEval(gt)
    order = [d["id"] - 1 for d in flat]
    metric.update_detections(flat, np.stack([masks[i] for i in order]), [d["score"] for d in flat])
    out = metric.compute()
    assert "mIoU" not in out  # no instance of its own: no mIoU
    results = tmp_path / "segm.json"
    results.write_text(json.dumps(metric.results))
    expected = _pycocotools(coco_root / "annotations" / "instances.json", results, "segm", sorted(by_image))
    assert out["segm_AP"] == expected[0] and out["segm_APl"] == expected[5]
    boxes = bbox_results(metric.results)
    assert all("segmentation" not in b for b in boxes)
    for box, result in zip(boxes, metric.results):
        mask = decode_segmentation(result["segmentation"], *result["segmentation"]["size"])
        ys, xs = np.nonzero(mask)
        assert box["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    boxes_file = tmp_path / "bbox.json"
    boxes_file.write_text(json.dumps(boxes))
    assert (
        out["bbox_AP"]
        == _pycocotools(coco_root / "annotations" / "instances.json", boxes_file, "bbox", sorted(by_image))[0]
    )


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


def test_image_ids_by_name(hard_set):
    gt = load_coco_gt(hard_set["gt"])
    assert image_ids_by_name(gt)["d/003"] == 3
    gt.dataset["images"].append({"id": 99, "file_name": "d/003.png", "height": 1, "width": 1})
    with pytest.raises(ValueError, match="share the name 'd/003'"):
        image_ids_by_name(gt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_coco_results(gt, [])

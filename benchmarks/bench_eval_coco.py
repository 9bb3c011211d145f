"""Seconds of COCO mask evaluation: pycocotools, faster-coco-eval and ``samlab eval coco`` on one synthetic set.

    python benchmarks/bench_eval_coco.py [--images 5000] [--objects 7] [--iou-type segm] [--seed 0]

Writes a synthetic COCO instances file (``--images`` images of 480 x 640 or 640 x 480, ``--objects`` instances each:
ellipses of COCO-like sizes, RLE, 1 in 50 a crowd region) and a results file (each instance shifted and rescaled by
a few pixels, some missed, some false positives, every result with a ``bbox``) into a temporary folder, then times
loading both files and ``evaluate`` + ``accumulate`` + ``summarize`` with pycocotools, with faster-coco-eval, and
with :func:`samlab.tools.eval_coco.evaluate_coco_files` on each engine (its checks of the files included). Prints
the seconds and the 12 numbers of each, and whether they are equal. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from samlab.tools.eval_coco import evaluate_coco_files


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _ellipse(height: int, width: int, cx: float, cy: float, ax: float, ay: float, angle: float) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.ellipse(mask, (int(cx), int(cy)), (max(int(ax), 1), max(int(ay), 1)), angle, 0, 360, 1, -1)
    return mask


def synthesize(root: Path, images: int, objects: int, seed: int = 0) -> tuple[Path, Path]:
    """Write ``root/instances.json`` and ``root/results.json``; return their paths."""
    rng = np.random.default_rng(seed)
    image_entries, annotations, results = [], [], []
    for image_id in range(1, images + 1):
        height, width = (480, 640) if image_id % 3 else (640, 480)
        image_entries.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "height": height, "width": width})
        for _ in range(objects):
            side = float(np.exp(rng.uniform(np.log(6), np.log(300))))  # small, medium and large as in COCO
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            ax, ay, angle = side / 2, side / 2 * rng.uniform(0.4, 1.0), rng.uniform(0, 180)
            truth = _ellipse(height, width, cx, cy, ax, ay, angle)
            if not truth.any():
                continue
            rle = _rle(truth)
            x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
            category = int(rng.integers(1, 11))
            crowd = int(rng.random() < 0.02)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "bbox": [x, y, w, h],
                    "iscrowd": crowd,
                }
            )
            if rng.random() < 0.1:  # missed
                continue
            shift = rng.normal(0, max(side * 0.05, 0.5), 2)
            pred = _ellipse(height, width, cx + shift[0], cy + shift[1], ax * rng.uniform(0.85, 1.15), ay, angle)
            results.append((image_id, category, pred, float(rng.random())))
        for _ in range(int(rng.integers(0, 3))):  # false positives
            side = float(np.exp(rng.uniform(np.log(6), np.log(200))))
            pred = _ellipse(height, width, rng.uniform(0, width), rng.uniform(0, height), side / 2, side / 3, 0.0)
            results.append((image_id, int(rng.integers(1, 11)), pred, float(rng.random() * 0.5)))
    entries = []
    for image_id, category, pred, score in results:
        if not pred.any():
            continue
        rle = _rle(pred)
        entries.append(
            {
                "image_id": image_id,
                "category_id": category,
                "segmentation": rle,
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "score": score,
            }
        )
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, 11)]
    gt_path, results_path = root / "instances.json", root / "results.json"
    gt_path.write_text(json.dumps({"images": image_entries, "annotations": annotations, "categories": categories}))
    results_path.write_text(json.dumps(entries))
    return gt_path, results_path


def run_pycocotools(gt_path: Path, results_path: Path, iou_type: str) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        evaluator = COCOeval(gt, gt.loadRes(str(results_path)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)


def run_faster_coco_eval(gt_path: Path, results_path: Path, iou_type: str) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    quiet = lambda *args, **kwargs: None  # noqa: E731
    gt = COCO(str(gt_path), print_function=quiet)
    evaluator = COCOeval_faster(gt, gt.loadRes(str(results_path)), iou_type, print_function=quiet)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return np.asarray(evaluator.stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--objects", type=int, default=7, help="instances per image (COCO val: 7.3 on average)")
    parser.add_argument("--iou-type", choices=("segm", "bbox"), default="segm")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        gt_path, results_path = synthesize(Path(tmp), args.images, args.objects, args.seed)
        num_results = len(json.loads(results_path.read_text()))
        print(f"synthesized {args.images} images, {num_results} results in {time.perf_counter() - start:.1f} s")
        runs = {
            "pycocotools": lambda: run_pycocotools(gt_path, results_path, args.iou_type),
            "faster-coco-eval": lambda: run_faster_coco_eval(gt_path, results_path, args.iou_type),
            "samlab (engine pycocotools)": lambda: np.asarray(
                evaluate_coco_files(gt_path, results_path, args.iou_type, "pycocotools")["stats"]
            ),
            "samlab (engine faster_coco_eval)": lambda: np.asarray(
                evaluate_coco_files(gt_path, results_path, args.iou_type, "faster_coco_eval")["stats"]
            ),
        }
        reference = None
        for name, run in runs.items():
            start = time.perf_counter()
            stats = run()
            seconds = time.perf_counter() - start
            reference = stats if reference is None else reference
            diff = float(np.abs(stats - reference).max())
            numbers = " ".join(f"{v:.4f}" for v in stats)
            print(f"{name:34s} {seconds:8.2f} s   max |diff| to pycocotools {diff:.1e}   {numbers}")


if __name__ == "__main__":
    main()

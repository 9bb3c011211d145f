"""COCO instance-segmentation evaluation: pycocotools' ``COCOeval`` on samlab's predictions, and mIoU per instance.

* :func:`load_coco_gt`, :func:`load_coco_results`: read a GT instances JSON and a results JSON into pycocotools
  objects, with :class:`DataError` naming the file for anything pycocotools would assert on or crash with.
* :func:`coco_stats`: the 12 standard numbers of ``COCOeval.summarize`` (``STAT_NAMES`` order), quietly.
* :class:`COCOPromptEval`: the accumulator of the oracle-prompt protocol: predicted masks of GT instances (at their
  original image size) become a COCO results list (score = predicted IoU, category from the GT annotation), scored
  with ``COCOeval`` for ``segm`` and ``bbox`` (boxes of the predicted masks), plus the mean IoU of each prediction
  with its own GT instance.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samlab.errors import DataError
from samlab.masks import decode_segmentation, encode_rle

STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
"""Names of the 12 numbers of ``COCOeval.stats``, in its order."""

IOU_TYPES = ("segm", "bbox")


def _read_json(path: Path, what: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(path, f"{what} file is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(path, f"corrupt {what} JSON ({err})") from None


def load_coco_gt(path: str | PathLike[str]) -> COCO:
    """A pycocotools ``COCO`` of a GT instances JSON (``images``, ``annotations``, ``categories`` lists; every
    annotation with ``id``, ``image_id``, ``category_id``, ``segmentation``, ``area``, ``bbox``, ``iscrowd``).

    Raises :class:`DataError` naming the file when it is missing, not JSON, or lacks what ``COCOeval`` needs.
    """
    path = Path(path)
    dataset = _read_json(path, "COCO annotation")
    if not isinstance(dataset, dict):
        raise DataError(path, "not a COCO instances file (top level is not a dict)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise DataError(path, f"not a COCO instances file (no '{key}' list)")
    for ann in dataset["annotations"]:
        missing = [
            k for k in ("id", "image_id", "category_id", "area", "bbox") if not isinstance(ann, dict) or k not in ann
        ]
        if missing:
            ann_id = ann.get("id") if isinstance(ann, dict) else None
            raise DataError(path, f"annotation {ann_id!r} lacks {missing}")
    gt = COCO()
    gt.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def _result_problem(result: Any, gt: COCO, iou_type: str) -> str | None:
    if not isinstance(result, dict):
        return "is not a dict"
    for key in ("image_id", "category_id", "score"):
        if key not in result:
            return f"lacks '{key}'"
    if result["image_id"] not in gt.imgs:
        return f"image_id {result['image_id']!r} is not in the ground truth"
    if result["category_id"] not in gt.cats:
        return f"category_id {result['category_id']!r} is not in the ground truth"
    if iou_type == "segm":
        segmentation = result.get("segmentation")
        if not isinstance(segmentation, dict) or "counts" not in segmentation or "size" not in segmentation:
            return "has no RLE 'segmentation' (dict with 'size' and 'counts')"
        image = gt.imgs[result["image_id"]]
        if [int(v) for v in segmentation["size"]] != [int(image["height"]), int(image["width"])]:
            return f"RLE size {segmentation['size']} differs from image {result['image_id']}'s height/width"
    else:
        box = result.get("bbox")
        if not isinstance(box, list) or len(box) != 4:
            return "has no 'bbox' [x, y, w, h]"
    return None


def load_coco_results(gt: COCO, results: str | PathLike[str] | list[dict], iou_type: str = "segm") -> COCO:
    """A pycocotools results ``COCO`` (``gt.loadRes``) of a results JSON file or list.

    Each result needs ``image_id`` and ``category_id`` of ``gt``, ``score``, and an RLE ``segmentation`` of the
    image's size (``iou_type="segm"``; a ``bbox`` is then ignored) or a ``bbox`` ``[x, y, w, h]`` (``"bbox"``, used
    as pycocotools' ``loadRes`` uses it; results with RLEs only are also accepted: their boxes are the masks').
    Raises :class:`DataError` naming the file and the entry otherwise. An empty list is allowed (nothing detected).
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    path = Path(results) if not isinstance(results, list) else Path("<results>")
    entries = _read_json(path, "COCO results") if not isinstance(results, list) else results
    if not isinstance(entries, list):
        raise DataError(path, "not a COCO results file (top level is not a list)")
    kind = "bbox" if iou_type == "bbox" and entries and "bbox" in entries[0] else "segm"
    for i, result in enumerate(entries):
        problem = _result_problem(result, gt, kind)
        if problem is not None:
            raise DataError(path, f"result {i} {problem}")
    if kind == "segm":
        # loadRes prefers 'bbox' when present and would then replace the mask by its box.
        entries = [{k: v for k, v in r.items() if k != "bbox"} for r in entries]
    dt = COCO()
    dt.dataset["images"] = list(gt.dataset["images"])
    dt.dataset["categories"] = list(gt.dataset["categories"])
    with contextlib.redirect_stdout(io.StringIO()):
        dt.createIndex()
        if entries:
            dt = gt.loadRes([dict(r) for r in entries])
    return dt


def coco_stats(gt: COCO, dt: COCO, iou_type: str = "segm", image_ids: Sequence[int] | None = None) -> np.ndarray:
    """The 12 ``COCOeval`` summary numbers (``STAT_NAMES`` order, fractions in [0, 1], -1 where undefined) of ``dt``
    against ``gt``; ``image_ids`` restricts the evaluation (default: every GT image). pycocotools' printing is
    swallowed. With no detection at all, AP and AR are 0 where ground truth exists."""
    evaluator = COCOeval(gt, dt, iou_type)
    if image_ids is not None:
        evaluator.params.imgIds = sorted(int(i) for i in image_ids)
    if not dt.anns:
        # COCOeval cannot run on an empty result set; nothing found means zero precision and recall.
        return np.zeros(len(STAT_NAMES))
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats, dtype=np.float64)


def stats_dict(stats: np.ndarray) -> dict[str, float]:
    """``{"AP": .., "AP50": .., ...}`` of the 12 ``COCOeval`` numbers."""
    return {name: float(value) for name, value in zip(STAT_NAMES, stats, strict=True)}


def prompt_results(
    gt: COCO, annotation_ids: Sequence[int], masks: np.ndarray, scores: Sequence[float]
) -> list[dict[str, Any]]:
    """COCO results entries of predictions made from GT annotations (the oracle-prompt protocol).

    Args:
        gt: the ground truth the prompts came from.
        annotation_ids: ``N`` annotation ids of ``gt``.
        masks: ``[N, H, W]`` bool predicted masks, each at the original size of its annotation's image.
        scores: ``N`` confidences (SAM's predicted IoU).

    Returns:
        ``N`` dicts ``{"image_id", "category_id", "segmentation" (RLE, str counts), "score"}``; image and category
        are the annotation's. Raises ValueError for an unknown annotation or a mask of the wrong size.
    """
    if len(annotation_ids) != len(masks) or len(masks) != len(scores):
        raise ValueError(f"got {len(annotation_ids)} ids, {len(masks)} masks and {len(scores)} scores")
    results = []
    for ann_id, mask, score in zip(annotation_ids, masks, scores, strict=True):
        ann = gt.anns.get(int(ann_id))
        if ann is None:
            raise ValueError(f"annotation id {int(ann_id)} is not in the ground truth")
        image = gt.imgs[ann["image_id"]]
        size = (int(image["height"]), int(image["width"]))
        if mask.shape != size:
            raise ValueError(f"mask of annotation {int(ann_id)} is {mask.shape}, image {ann['image_id']} is {size}")
        results.append(
            {
                "image_id": int(ann["image_id"]),
                "category_id": int(ann["category_id"]),
                "segmentation": encode_rle(mask),
                "score": float(score),
            }
        )
    return results


class COCOPromptEval:
    """Accumulates oracle-prompt predictions of GT instances and scores them with ``COCOeval`` and mIoU.

    ``gt``: the GT instances JSON (or a loaded ``COCO``). Call :meth:`update` with the predicted masks of some GT
    annotations, then :meth:`compute`. Under ``torch.distributed`` the ranks' results are gathered in
    :meth:`compute` (every rank gets the same numbers).
    """

    def __init__(self, gt: str | PathLike[str] | COCO) -> None:
        self.gt = gt if isinstance(gt, COCO) else load_coco_gt(gt)
        self.reset()

    def reset(self) -> None:
        """Forget every prediction."""
        # Keyed by annotation id: a prediction made twice (a distributed sampler pads ranks with repeated samples)
        # counts once, as the second one would be a false positive for COCOeval.
        self.predictions: dict[int, tuple[dict[str, Any], float]] = {}

    @property
    def results(self) -> list[dict[str, Any]]:
        """The COCO results entries of this process, one per annotation."""
        return [result for result, _ in self.predictions.values()]

    def update(self, annotation_ids: Sequence[int], masks: np.ndarray, scores: Sequence[float]) -> None:
        """Add the predictions of GT annotations (a repeated annotation replaces its earlier prediction).

        Args:
            annotation_ids: ``N`` annotation ids of ``gt`` (the objects the prompts came from).
            masks: ``[N, H, W]`` bool predicted masks at the original size of each annotation's image.
            scores: ``N`` confidences (SAM's predicted IoU).
        """
        results = prompt_results(self.gt, annotation_ids, masks, scores)
        for ann_id, mask, result in zip(annotation_ids, masks, results, strict=True):
            ann = self.gt.anns[int(ann_id)]
            truth = decode_segmentation(ann["segmentation"], *mask.shape)
            union = np.logical_or(mask, truth).sum()
            iou = float(np.logical_and(mask, truth).sum() / union) if union else 0.0
            self.predictions[int(ann_id)] = (result, iou)

    def _gathered(self) -> dict[int, tuple[dict[str, Any], float]]:
        if not (dist.is_available() and dist.is_initialized()):
            return self.predictions
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, self.predictions)
        return {ann_id: value for part in parts for ann_id, value in part.items()}

    def compute(self) -> dict[str, float]:
        """``segm_AP``, ``segm_AP50``, … (the 12 numbers of each of ``segm`` and ``bbox``, prefixed) and ``mIoU``,
        over the images that received predictions; fractions in [0, 1]."""
        predictions = self._gathered()
        results = [result for result, _ in predictions.values()]
        ious = [iou for _, iou in predictions.values()]
        image_ids = sorted({r["image_id"] for r in results})
        out: dict[str, float] = {}
        dt = load_coco_results(self.gt, results, "segm")
        for iou_type in IOU_TYPES:
            stats = coco_stats(self.gt, dt, iou_type, image_ids=image_ids or None)
            out.update({f"{iou_type}_{name}": value for name, value in stats_dict(stats).items()})
        out["mIoU"] = float(np.mean(ious)) if ious else 0.0
        return out

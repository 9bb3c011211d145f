"""COCO instance-segmentation evaluation: ``COCOeval`` on samlab's predictions, and mIoU per instance.

* :func:`load_coco_gt`, :func:`load_coco_results`: read a GT instances JSON and a results JSON into pycocotools
  objects exactly as pycocotools does (``loadRes``), with :class:`DataError` naming the file for anything
  pycocotools would assert on or crash with.
* :func:`coco_stats`: the 12 standard numbers of ``COCOeval.summarize`` (``STAT_NAMES`` order), quietly, computed by
  pycocotools or by faster-coco-eval (equal numbers; :func:`default_engine` picks faster-coco-eval when installed).
* :class:`COCOPromptEval`: the accumulator of prompted evaluation: predicted masks of GT instances (oracle prompts)
  or of detections (detector prompts), at their original image size, become a COCO results list scored with
  ``COCOeval`` for ``segm`` and ``bbox`` (boxes of the predicted masks), plus the mean IoU of each oracle
  prediction with its own GT instance.
* :func:`bbox_results`, :func:`detections_by_image`: box results of mask results; a detections file as prompts.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import os
import warnings
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samlab.errors import DataError
from samlab.masks import decode_segmentation, encode_rle

STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
"""Names of the 12 numbers of ``COCOeval.stats``, in its order."""

IOU_TYPES = ("segm", "bbox")
ENGINES = ("pycocotools", "faster_coco_eval")
"""The COCOeval implementations :func:`coco_stats` can run (equal numbers)."""


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


def _segmentation_problem(segmentation: Any, image: dict[str, Any]) -> str | None:
    if not isinstance(segmentation, dict) or "counts" not in segmentation or "size" not in segmentation:
        return "has no RLE 'segmentation' (dict with 'size' and 'counts')"
    if [int(v) for v in segmentation["size"]] != [int(image["height"]), int(image["width"])]:
        return f"RLE size {segmentation['size']} differs from image {image['id']}'s height/width"
    return None


def _result_problem(result: Any, gt: COCO, with_box: bool) -> str | None:
    """What keeps ``result`` from ``loadRes``/``COCOeval``, or None. ``with_box``: pycocotools' box branch (the
    first result has a ``bbox``), where every result needs one and a ``segmentation`` is optional."""
    if not isinstance(result, dict):
        return "is not a dict"
    for key in ("image_id", "category_id", "score"):
        if key not in result:
            return f"lacks '{key}'"
    image = gt.imgs.get(result["image_id"])
    if image is None:
        return f"image_id {result['image_id']!r} is not in the ground truth"
    if with_box:
        box = result.get("bbox")
        if not isinstance(box, list) or len(box) != 4:
            return "has no 'bbox' [x, y, w, h] (the first result has one, so pycocotools reads every result's)"
        segmentation = result.get("segmentation")
        if segmentation is None or isinstance(segmentation, list):  # absent: the box; a list: polygons
            return None
    return _segmentation_problem(result.get("segmentation"), image)


def _empty_results(gt: COCO) -> COCO:
    """A results ``COCO`` without detections over ``gt``'s images (what nothing detected evaluates as)."""
    dt = COCO()
    dt.dataset["images"] = list(gt.dataset["images"])
    dt.dataset["categories"] = list(gt.dataset["categories"])
    with contextlib.redirect_stdout(io.StringIO()):
        dt.createIndex()
    return dt


def load_coco_results(gt: COCO, results: str | PathLike[str] | list[dict]) -> COCO:
    """A results ``COCO`` of a results JSON file or list, exactly as pycocotools' ``gt.loadRes`` builds it.

    pycocotools reads the results the way the first one looks: with a ``bbox`` (``[x, y, w, h]``), every result's
    area is its box's ``w * h`` (also for ``segm`` evaluation, where it decides small/medium/large) and a missing
    ``segmentation`` becomes the box polygon; without one, every result needs an RLE ``segmentation`` of its
    image's size, whose pixel count is the area and whose box is the ``bbox``. Each result also needs ``image_id``
    (of ``gt``), ``category_id`` and ``score``. Raises :class:`DataError` naming the file and the entry otherwise;
    warns (naming the file) about results of categories ``gt`` does not have, which ``COCOeval`` ignores. An empty
    list is allowed (nothing detected). The entries are copied, never changed.
    """
    path = Path(results) if not isinstance(results, list) else Path("<results>")
    entries = _read_json(path, "COCO results") if not isinstance(results, list) else results
    return _load_results(gt, entries, path)


def _load_results(gt: COCO, entries: Any, path: Path) -> COCO:
    if not isinstance(entries, list):
        raise DataError(path, "not a COCO results file (top level is not a list)")
    if not entries:
        return _empty_results(gt)
    first = entries[0]
    with_box = isinstance(first, dict) and "bbox" in first and first["bbox"] != []
    for i, result in enumerate(entries):
        problem = _result_problem(result, gt, with_box)
        if problem is not None:
            raise DataError(path, f"result {i} {problem}")
    unknown = sorted({r["category_id"] for r in entries if r["category_id"] not in gt.cats}, key=str)
    if unknown:
        warnings.warn(
            f"{path}: results of category ids {unknown[:5]} that the ground truth lacks; COCOeval ignores them",
            stacklevel=3,
        )
    with contextlib.redirect_stdout(io.StringIO()):
        return gt.loadRes(copy.deepcopy(entries))


def default_engine() -> str:
    """``"faster_coco_eval"`` when that package is installed (the same numbers, several times faster on large
    sets), else ``"pycocotools"``."""
    return "faster_coco_eval" if importlib.util.find_spec("faster_coco_eval") is not None else "pycocotools"


def _evaluator(gt: COCO, dt: COCO, iou_type: str, engine: str) -> Any:
    if engine == "pycocotools":
        return COCOeval(gt, dt, iou_type)
    if engine == "faster_coco_eval":
        from faster_coco_eval import COCOeval_faster

        return COCOeval_faster(gt, dt, iou_type, print_function=lambda *args, **kwargs: None)
    raise ValueError(f"COCO engine must be one of {ENGINES}, got {engine!r}")


def coco_stats(
    gt: COCO,
    dt: COCO,
    iou_type: str = "segm",
    image_ids: Sequence[int] | None = None,
    category_ids: Sequence[int] | None = None,
    engine: str | None = None,
) -> np.ndarray:
    """The 12 ``COCOeval`` summary numbers (``STAT_NAMES`` order, fractions in [0, 1], -1 where undefined) of ``dt``
    against ``gt``, as pycocotools computes them.

    ``image_ids`` / ``category_ids`` restrict the evaluation (default: every GT image / category);
    ``engine``: ``"pycocotools"`` or ``"faster_coco_eval"`` (same numbers), :func:`default_engine` when None. The
    evaluators' printing is swallowed. With no detection at all, AP and AR are 0 where ground truth exists and -1
    where it does not, as ``COCOeval`` gives for a results set without detections.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    evaluator = _evaluator(gt, dt, iou_type, engine or default_engine())
    if image_ids is not None:
        evaluator.params.imgIds = sorted(int(i) for i in image_ids)
    if category_ids is not None:
        evaluator.params.catIds = sorted(int(c) for c in category_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats, dtype=np.float64)


def stats_dict(stats: np.ndarray) -> dict[str, float]:
    """``{"AP": .., "AP50": .., ...}`` of the 12 ``COCOeval`` numbers."""
    return {name: float(value) for name, value in zip(STAT_NAMES, stats, strict=True)}


def image_ids_by_name(gt: COCO) -> dict[str, int]:
    """Image id of each image name of ``gt`` (its ``file_name`` without the extension, the name
    :class:`samlab.data.formats.coco.COCOReader` gives a batch's image). Raises ValueError for a name two images
    share."""
    ids: dict[str, int] = {}
    for image in gt.dataset["images"]:
        name = os.path.splitext(image["file_name"])[0]
        if name in ids:
            raise ValueError(f"images {ids[name]} and {image['id']} share the name '{name}'")
        ids[name] = int(image["id"])
    return ids


def mask_results(
    gt: COCO,
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    masks: np.ndarray,
    scores: Sequence[float],
) -> list[dict[str, Any]]:
    """COCO results entries of ``N`` predicted masks.

    Args:
        gt: the ground truth (its image sizes are checked).
        image_ids / category_ids: ``N`` image and category ids of ``gt``.
        masks: ``[N, H, W]`` bool masks, each at the original size of its image.
        scores: ``N`` confidences.

    Returns:
        ``N`` dicts ``{"image_id", "category_id", "segmentation" (RLE, str counts), "score"}`` (no ``bbox``: the
        area stays the mask's). Raises ValueError for an unknown image or a mask of the wrong size.
    """
    if not len(image_ids) == len(category_ids) == len(masks) == len(scores):
        raise ValueError(
            f"got {len(image_ids)} images, {len(category_ids)} categories, {len(masks)} masks and {len(scores)} scores"
        )
    results = []
    for image_id, category_id, mask, score in zip(image_ids, category_ids, masks, scores, strict=True):
        image = gt.imgs.get(int(image_id))
        if image is None:
            raise ValueError(f"image id {int(image_id)} is not in the ground truth")
        size = (int(image["height"]), int(image["width"]))
        if mask.shape != size:
            raise ValueError(f"mask for image {int(image_id)} is {mask.shape}, the image is {size}")
        results.append(
            {
                "image_id": int(image_id),
                "category_id": int(category_id),
                "segmentation": encode_rle(mask),
                "score": float(score),
            }
        )
    return results


def prompt_results(
    gt: COCO, annotation_ids: Sequence[int], masks: np.ndarray, scores: Sequence[float]
) -> list[dict[str, Any]]:
    """COCO results entries (:func:`mask_results`) of predictions made from GT annotations (the oracle-prompt
    protocol): image and category are the annotation's. ``masks``: ``[N, H, W]`` bool at the original image size.
    Raises ValueError for an unknown annotation or a mask of the wrong size."""
    anns = []
    for ann_id in annotation_ids:
        ann = gt.anns.get(int(ann_id))
        if ann is None:
            raise ValueError(f"annotation id {int(ann_id)} is not in the ground truth")
        anns.append(ann)
    if len(anns) != len(masks) or len(masks) != len(scores):
        raise ValueError(f"got {len(anns)} ids, {len(masks)} masks and {len(scores)} scores")
    return mask_results(gt, [a["image_id"] for a in anns], [a["category_id"] for a in anns], masks, scores)


def bbox_results(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The box results of mask results: each entry with its RLE ``segmentation`` replaced by the mask's
    ``bbox`` ``[x, y, w, h]`` (pycocotools' ``toBbox``, as ``loadRes`` boxes a mask result)."""
    out = []
    for result in results:
        entry = {k: v for k, v in result.items() if k != "segmentation"}
        entry["bbox"] = [float(v) for v in mask_utils.toBbox(result["segmentation"])]
        out.append(entry)
    return out


def detections_by_image(gt: COCO, path: str | PathLike[str]) -> dict[int, list[dict[str, Any]]]:
    """The boxes of a detections file (a COCO results JSON with ``bbox`` ``[x, y, w, h]``, ``image_id``,
    ``category_id``, ``score``; checked as :func:`load_coco_results`) by image id, in file order, each with its
    ``id`` (1-based position in the file). Raises :class:`DataError` naming the file when a result has no box."""
    path = Path(path)
    entries = _read_json(path, "detections")
    if isinstance(entries, list) and entries and not (isinstance(entries[0], dict) and entries[0].get("bbox")):
        raise DataError(path, "result 0 has no 'bbox' [x, y, w, h]: detections prompt with their boxes")
    dt = _load_results(gt, entries, path)
    out: dict[int, list[dict[str, Any]]] = {}
    for ann in sorted(dt.anns.values(), key=lambda a: a["id"]):
        out.setdefault(int(ann["image_id"]), []).append(ann)
    return out


class COCOPromptEval:
    """Accumulates prompted predictions and scores them with ``COCOeval`` (``segm`` and ``bbox``) and mIoU.

    ``gt``: the GT instances JSON (or a loaded ``COCO``); ``engine``: the ``COCOeval`` of :func:`coco_stats`. Call
    :meth:`update` with the predicted masks of GT annotations (oracle prompts) or :meth:`update_detections` with
    those of detections (detector prompts), :meth:`add_images` with every evaluated image, then :meth:`compute`.
    Under ``torch.distributed`` the ranks' predictions are gathered in :meth:`compute` (every rank gets the same
    numbers).
    """

    def __init__(self, gt: str | PathLike[str] | COCO, engine: str | None = None) -> None:
        self.gt = gt if isinstance(gt, COCO) else load_coco_gt(gt)
        self.engine = engine
        self.reset()

    def reset(self) -> None:
        """Forget every prediction and image."""
        # Keyed by the prompt (annotation or detection): a prediction made twice (a distributed sampler pads ranks
        # with repeated samples) counts once, as the second one would be a false positive for COCOeval.
        self.predictions: dict[tuple[str, int], tuple[dict[str, Any], float | None]] = {}
        self.image_ids: set[int] = set()

    @property
    def results(self) -> list[dict[str, Any]]:
        """The COCO results entries of this process, one per prompt."""
        return [result for result, _ in self.predictions.values()]

    def add_images(self, image_ids: Sequence[int]) -> None:
        """Count these images as evaluated (their ground truth counts, predicted or not)."""
        self.image_ids.update(int(i) for i in image_ids)

    def update(self, annotation_ids: Sequence[int], masks: np.ndarray, scores: Sequence[float]) -> None:
        """Add the predictions of GT annotations (a repeated annotation replaces its earlier prediction); their
        images count as evaluated.

        Args:
            annotation_ids: ``N`` annotation ids of ``gt`` (the objects the prompts came from).
            masks: ``[N, H, W]`` bool predicted masks at the original size of each annotation's image.
            scores: ``N`` confidences.
        """
        results = prompt_results(self.gt, annotation_ids, masks, scores)
        for ann_id, mask, result in zip(annotation_ids, masks, results, strict=True):
            ann = self.gt.anns[int(ann_id)]
            truth = decode_segmentation(ann["segmentation"], *mask.shape)
            union = np.logical_or(mask, truth).sum()
            iou = float(np.logical_and(mask, truth).sum() / union) if union else 0.0
            self.predictions[("annotation", int(ann_id))] = (result, iou)
        self.add_images([r["image_id"] for r in results])

    def update_detections(
        self, detections: Sequence[dict[str, Any]], masks: np.ndarray, scores: Sequence[float]
    ) -> None:
        """Add the predictions prompted by detections (entries of :func:`detections_by_image`: ``id``,
        ``image_id``, ``category_id``); the category is the detection's. ``masks``: ``[N, H, W]`` bool at the
        original image size; ``scores``: ``N`` confidences. Their images count as evaluated."""
        results = mask_results(
            self.gt, [d["image_id"] for d in detections], [d["category_id"] for d in detections], masks, scores
        )
        for detection, result in zip(detections, results, strict=True):
            self.predictions[("detection", int(detection["id"]))] = (result, None)
        self.add_images([r["image_id"] for r in results])

    def _gathered(self) -> tuple[dict[tuple[str, int], tuple[dict[str, Any], float | None]], set[int]]:
        import torch.distributed as dist  # here, so that `samlab eval coco` imports no torch

        if not (dist.is_available() and dist.is_initialized()):
            return self.predictions, self.image_ids
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (self.predictions, self.image_ids))
        predictions = {key: value for part, _ in parts for key, value in part.items()}
        return predictions, {i for _, images in parts for i in images}

    def compute(self) -> dict[str, float]:
        """``segm_AP``, ``segm_AP50``, … (the 12 numbers of each of ``segm`` and ``bbox``, prefixed) over the
        evaluated images, and ``mIoU`` of the oracle-prompt predictions with their own instances (only when there
        are some); fractions in [0, 1]. Without any evaluated image every number is 0."""
        predictions, image_ids = self._gathered()
        results = [result for result, _ in predictions.values()]
        ious = [iou for _, iou in predictions.values() if iou is not None]
        out: dict[str, float] = {}
        dt = load_coco_results(self.gt, results)
        for iou_type in IOU_TYPES:
            if image_ids:
                stats = coco_stats(self.gt, dt, iou_type, image_ids=sorted(image_ids), engine=self.engine)
            else:
                stats = np.zeros(len(STAT_NAMES))
            out.update({f"{iou_type}_{name}": value for name, value in stats_dict(stats).items()})
        if ious or not results:
            out["mIoU"] = float(np.mean(ious)) if ious else 0.0
        return out

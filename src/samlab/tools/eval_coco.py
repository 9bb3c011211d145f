"""``samlab eval coco``: the 12 standard COCO numbers of a results file, as pycocotools' ``COCOeval`` computes them
(run by faster-coco-eval when installed: the same numbers)."""

from __future__ import annotations

import json
import sys
from os import PathLike

from samlab.errors import DataError
from samlab.metrics.coco import STAT_NAMES, coco_stats, load_coco_gt, load_coco_results, stats_dict


def evaluate_coco_files(
    gt: str | PathLike[str], pred: str | PathLike[str], iou_type: str = "segm", engine: str | None = None
) -> dict[str, float | list[float]]:
    """``{"stats": [12 numbers in pycocotools order], "AP": .., "AP50": .., ...}`` of results file ``pred`` against
    GT instances file ``gt`` for ``iou_type`` (``"segm"`` or ``"bbox"``), over every GT image, as pycocotools'
    ``loadRes`` + ``COCOeval`` compute them (fractions in [0, 1], -1 where undefined; results with a ``bbox`` take
    their area from it). ``engine``: ``"pycocotools"`` or ``"faster_coco_eval"``, the installed faster one when
    None. Raises :class:`DataError` naming a bad file."""
    coco_gt = load_coco_gt(gt)
    coco_dt = load_coco_results(coco_gt, pred)
    stats = coco_stats(coco_gt, coco_dt, iou_type, engine=engine)
    return {"stats": [float(v) for v in stats], **stats_dict(stats)}


def run_eval_coco(
    gt: str | PathLike[str], pred: str | PathLike[str], iou_type: str, as_json: bool, engine: str | None = None
) -> int:
    """CLI body of ``samlab eval coco``: print the numbers as a table or one JSON object.

    Returns 0, or 2 when a file is bad (the :class:`DataError` goes to stderr).
    """
    try:
        result = evaluate_coco_files(gt, pred, iou_type, engine)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(result))
    else:
        for name in STAT_NAMES:
            print(f"{iou_type} {name:>5}: {result[name]:.3f}")
    return 0

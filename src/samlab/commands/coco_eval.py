"""``samlab eval coco``: COCO AP/AR of a results file (pycocotools' ``COCOeval``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from samlab.commands import Tool


def _coco_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, type=Path, help="ground-truth COCO instances JSON")
    parser.add_argument("--pred", required=True, type=Path, help="COCO results JSON (e.g. result.segm.json)")
    parser.add_argument("--iou-type", choices=("segm", "bbox"), default="segm", help="mask or box IoU (default segm)")
    parser.add_argument("--json", action="store_true", help='print {"stats": [12 numbers], "AP": .., ...}')
    parser.add_argument(
        "--engine",
        choices=("pycocotools", "faster_coco_eval"),
        default=None,
        help="COCOeval implementation (same numbers; default faster_coco_eval when installed, else pycocotools)",
    )


def _coco(args: argparse.Namespace) -> int:
    from samlab.tools.eval_coco import run_eval_coco

    return run_eval_coco(args.gt, args.pred, args.iou_type, args.json, args.engine)


TOOLS = [
    Tool(
        "eval",
        "coco",
        "COCO AP/AR of a results file against ground truth (pycocotools' COCOeval numbers)",
        "The 12 standard COCO numbers (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl) of a COCO "
        "results file against a COCO instances file, exactly as pycocotools' loadRes and COCOeval compute them, for "
        "masks (segm) or boxes (bbox; from the results' boxes, or from their masks when they have none). As in "
        "pycocotools, results with a bbox take their area (small/medium/large) from it, also for segm. Run by "
        "faster-coco-eval when installed (same numbers). Bad files stop with an error naming the file.",
        _coco_arguments,
        _coco,
    ),
]

"""``samlab data sa1b-to-coco|segment-everything``: the data preparation of MASA (segments of raw images → COCO)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from samlab.commands import Tool


def _sa1b_to_coco_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--img-list", required=True, type=Path, help="JSON list of image names or ids (or MASA's iminfo)"
    )
    parser.add_argument("--input", required=True, type=Path, help="folder of the SA-1B <name>.json files")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--prefix", help="output name prefix (default: the list's stem without '_iminfo')")
    parser.add_argument("--workers", type=int, help="processes (default: every core)")
    parser.add_argument("--shard-size", type=int, default=1000, help="images per resumable unit")
    parser.add_argument("--skip-bad", action="store_true", help="leave out images whose JSON is missing or invalid")


def _sa1b_to_coco(args: argparse.Namespace) -> int:
    from samlab.tools.sa1b_to_coco import sa1b_to_coco

    summary = sa1b_to_coco(
        args.img_list,
        args.input,
        args.out,
        prefix=args.prefix,
        workers=args.workers,
        shard_size=args.shard_size,
        skip_bad=args.skip_bad,
    )
    for problem in summary.skipped:
        print(f"skipped: {problem}", file=sys.stderr)
    result = asdict(summary)
    result["skipped"] = len(summary.skipped)
    print(json.dumps(result))
    return 0


def _segment_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders (searched recursively)")
    parser.add_argument("--checkpoint", required=True, type=Path, help="local SAM or SAM 2 checkpoint")
    parser.add_argument("--out", required=True, type=Path, help="output folder (SA-1B layout)")
    parser.add_argument("--backend", choices=("segment_anything", "sam2"), default="segment_anything")
    parser.add_argument("--model-type", default="vit_h", choices=("vit_b", "vit_l", "vit_h"), help="SAM model")
    parser.add_argument("--variant", default="sam2.1_hiera_l", help="SAM 2 variant (backend sam2)")
    parser.add_argument("--device", help="torch device (default: cuda when available)")
    parser.add_argument("--points-per-side", type=int, help="prompt grid side (package default 32)")
    parser.add_argument("--points-per-batch", type=int, help="prompt points decoded at once (package default 64)")
    parser.add_argument("--pred-iou-thresh", type=float, help="minimum predicted IoU (package default)")
    parser.add_argument("--stability-score-thresh", type=float, help="minimum stability score (package default)")
    parser.add_argument("--min-mask-region-area", type=int, help="remove holes and islands below this area")
    parser.add_argument("--skip-bad", action="store_true", help="list unreadable images instead of stopping")


def _segment(args: argparse.Namespace) -> int:
    from samlab.tools.segment_everything import build_mask_generator, segment_everything

    generator = build_mask_generator(
        args.backend,
        checkpoint=args.checkpoint,
        model_type=args.model_type,
        variant=args.variant,
        device=args.device,
        points_per_side=args.points_per_side,
        points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        min_mask_region_area=args.min_mask_region_area,
    )
    summary = segment_everything(args.images, args.out, generator, skip_bad=args.skip_bad)
    for problem in summary.failed:
        print(f"failed: {problem}", file=sys.stderr)
    result = asdict(summary)
    result["failed"] = len(summary.failed)
    print(json.dumps(result))
    return 0


TOOLS = [
    Tool(
        "data",
        "sa1b-to-coco",
        "SA-1B JSONs to MASA's <prefix>_mask_anno.json and <prefix>_bbox_anno.json (streamed, resumable)",
        "Convert the SA-1B images named by --img-list (a JSON list of file names or ids, MASA's "
        "{'images': [{'file_name': ...}]} list, or a text file) to the two COCO files MASA trains on: "
        "<prefix>_mask_anno.json (RLE segmentations) and <prefix>_bbox_anno.json (boxes only), one class 'object'. "
        "Memory stays bounded whatever the number of images; every core converts; a rerun after an interruption "
        "resumes and gives the same files. Prints counts as JSON.",
        _sa1b_to_coco_arguments,
        _sa1b_to_coco,
    ),
    Tool(
        "data",
        "segment-everything",
        "SAM / SAM 2 automatic masks of raw images, written as an SA-1B folder",
        "Run SAM's automatic mask generator (segment_anything, or sam2 with --backend sam2) from a local checkpoint "
        "over raw images of any domain, on GPU when there is one, and write OUT/<stem>.json in the SA-1B layout with "
        "the image next to it (ready for sa1b-to-coco and the SA-1B reader). Images whose JSON exists are skipped. "
        "Prints counts as JSON.",
        _segment_arguments,
        _segment,
    ),
]

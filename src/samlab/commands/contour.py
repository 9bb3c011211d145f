"""``samlab eval contour``: DirectSAM's effective contour recall and token count of predicted boundary maps."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from samlab.commands import Tool


def _thresholds(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 <= v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"thresholds must be in [0, 1), got {text!r}")
    return values


def _contour_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, type=Path, help="folder of boundary PNGs (non-zero = boundary)")
    parser.add_argument("--pred", required=True, type=Path, help="folder of 8-bit probability PNGs, same names")
    parser.add_argument(
        "--thresholds",
        type=_thresholds,
        default=[0.1, 0.2, 0.3, 0.4, 0.5],
        help="comma-separated probability thresholds (default 0.1,...,0.5: DirectSAM's evaluate.py sweep)",
    )
    parser.add_argument(
        "--tolerance", type=int, default=5, help="border band and matching kernel, in pixels (evaluate.py: 5)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _contour(args: argparse.Namespace) -> int:
    from samlab.tools.eval_contour import contour_table, evaluate_contours

    result = evaluate_contours(args.gt, args.pred, args.thresholds, args.tolerance)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['num_images']} images scored, {result['num_skipped']} skipped (empty ground truth)")
    print(contour_table(result))
    return 0


TOOLS = [
    Tool(
        "eval",
        "contour",
        "effective contour recall and tokens of predicted boundary maps (DirectSAM)",
        "DirectSAM's evaluation: for each threshold, the prediction (PNG value / 255 > threshold) is skeletonised; "
        "the 4-connected regions it encloses are the tokens; the effective contour recall is the fraction of "
        "ground-truth boundary pixels within the tolerance of the tokens' outlines. Also boundary precision, recall "
        "and F at the tolerance (in --json). Means over images; images with an empty ground truth are skipped. "
        "Prints DirectSAM's table: mean recall and mean token count per threshold.",
        _contour_arguments,
        _contour,
    ),
]

"""``samlab eval vos``: J, F and J&F of predicted mask folders (DAVIS or SA-V layout)."""

from __future__ import annotations

import argparse
from pathlib import Path

from samlab.commands import Tool


def _vos_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, type=Path)
    parser.add_argument("--pred", required=True, type=Path)
    parser.add_argument("--skip-first-last", action="store_true", help="ignore each video's first and last frame")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--csv", type=Path, help="write per-object rows to this CSV file")
    parser.add_argument("--workers", type=int, default=1, help="processes")


def _vos(args: argparse.Namespace) -> int:
    from samlab.tools.eval_vos import run_eval_vos

    return run_eval_vos(args.gt, args.pred, args.skip_first_last, args.json, args.csv, workers=args.workers)


TOOLS = [
    Tool(
        "eval",
        "vos",
        "J, F and J&F of predicted masks against ground truth (DAVIS or SA-V layout)",
        "Semi-supervised VOS evaluation: J (region IoU), F (boundary F-measure, tolerance 0.008 x image diagonal) "
        "and J&F per object and globally (mean over objects), in percent. GT and PRED are DAVIS layout "
        "(<vid>/<frame>.png, palette index = object id) or SA-V layout (<vid>/<obj:03d>/<frame>.png), detected.",
        _vos_arguments,
        _vos,
    ),
]

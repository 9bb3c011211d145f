"""``samlab eval track``: multiple-object tracking scores (HOTA, AssA, DetA, MOTA, IDF1) with TrackEval."""

from __future__ import annotations

import argparse
from pathlib import Path

from samlab.commands import Tool


def _track_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, type=Path, help="ground truth: GT/<seq>/gt/gt.txt + seqinfo.ini")
    parser.add_argument("--pred", required=True, type=Path, help="results: PRED/<seq>.txt")
    parser.add_argument("--seq", nargs="+", help="sequences to score (default: every sequence of GT)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _track(args: argparse.Namespace) -> int:
    from samlab.tools.eval_track import run_eval_track

    return run_eval_track(args.gt, args.pred, args.seq, args.json)


TOOLS = [
    Tool(
        "eval",
        "track",
        "HOTA, AssA, DetA, MOTA and IDF1 of tracking results (MOTChallenge layout, TrackEval)",
        "Multiple-object tracking evaluation by TrackEval (MOT17 protocol: IoU 0.5 for MOTA and IDF1, HOTA "
        "averaged over IoU 0.05..0.95). GT is GT/<seq>/gt/gt.txt with GT/<seq>/seqinfo.ini, PRED is PRED/<seq>.txt "
        "(frame,id,x,y,w,h,score,-1,-1,-1). Prints the scores in percent over all sequences and per sequence: a "
        "table, or one JSON object with --json.",
        _track_arguments,
        _track,
    ),
]

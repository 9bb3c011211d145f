"""``samlab eval track``: tracking scores: HOTA/MOTA/IDF1 (TrackEval), TETA (TAO), BDD100K's mHOTA/mMOTA/mIDF1."""

from __future__ import annotations

import argparse
from pathlib import Path

from samlab.commands import Tool


def _track_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gt",
        required=True,
        type=Path,
        help="ground truth: GT/<seq>/gt/gt.txt + seqinfo.ini (hota), TAO JSON (teta), GT/<seq>.json (bdd100k)",
    )
    parser.add_argument(
        "--pred",
        required=True,
        type=Path,
        help="results: PRED/<seq>.txt (hota), TAO results JSON (teta), PRED/<seq>.json (bdd100k)",
    )
    parser.add_argument(
        "--metric", choices=("hota", "teta", "bdd100k"), default="hota", help="what to compute (default: hota)"
    )
    parser.add_argument("--seq", nargs="+", help="sequences to score (hota; default: every sequence of GT)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _track(args: argparse.Namespace) -> int:
    from samlab.tools.eval_track import run_eval_track

    return run_eval_track(args.gt, args.pred, args.seq, args.json, args.metric)


TOOLS = [
    Tool(
        "eval",
        "track",
        "tracking scores: HOTA, MOTA, IDF1 (MOTChallenge, TrackEval), TETA (TAO), mHOTA/mMOTA/mIDF1 (BDD100K)",
        "Multiple-object tracking evaluation. --metric hota (default): TrackEval, MOT17 protocol (IoU 0.5 for MOTA "
        "and IDF1, HOTA averaged over IoU 0.05..0.95); GT is GT/<seq>/gt/gt.txt with GT/<seq>/seqinfo.ini, PRED is "
        "PRED/<seq>.txt (frame,id,x,y,w,h,score,-1,-1,-1). --metric teta: TETA, LocA, AssocA, ClsA as SysCV/tet "
        "defines them (MASA's TAO protocol); GT is a TAO annotation JSON, PRED a TAO results JSON (samlab track "
        "--out-json). --metric bdd100k: BDD100K MOT by TrackEval; GT and PRED are folders of <seq>.json in BDD100K's "
        "scalabel layout. Prints the scores in percent: a table, or one JSON object with --json.",
        _track_arguments,
        _track,
    ),
]

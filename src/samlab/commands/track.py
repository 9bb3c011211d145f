"""``samlab track``: multiple-object tracking of a detector's boxes with a MASA model (MOTChallenge, TAO results)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from samlab.commands import Tool, print_result


def _track_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="samlab config whose model: block is a MASAModule (not with an exported CKPT)"
    )
    parser.add_argument("--frames", required=True, type=Path, help="folder of the video's frames (sorted images)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--detections", type=Path, help="MOTChallenge det.txt or JSON detections (frames from 1)")
    source.add_argument(
        "--detector",
        help="detect on each frame: torchvision:NAME (with --detector-checkpoint), ultralytics:PATH.pt, or masa "
        "(the MASA model's own detection head)",
    )
    parser.add_argument("--detector-checkpoint", type=Path, help="local weights of a torchvision detector")
    parser.add_argument("--detector-score-thr", type=float, help="the detector's minimum score (default: its own)")
    parser.add_argument("--out", required=True, type=Path, help="MOTChallenge results file to write (tracks.txt)")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="Lightning checkpoint of the module (samlab fit output), or alone a tracker checkpoint of "
        "`samlab export --format masa`",
    )
    parser.add_argument("--out-json", type=Path, help="also write TAO/COCO-style results JSON (masks as RLE)")
    parser.add_argument(
        "--tracker",
        choices=("tao", "demo", "bdd"),
        help="MASA's tracker settings instead of the config's: tao (TAO/TETA tests), demo (plug-and-play: "
        "max_distance 100, fps 30), bdd (MasaBDDTracker)",
    )
    parser.add_argument("--max-distance", type=float, help="spatial gating in pixels (-1: none)")
    parser.add_argument("--fps", type=float, help="frame rate for the spatial gating")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    parser.add_argument("--json", action="store_true", help="print the counts as one JSON object")


def _track(args: argparse.Namespace) -> int:
    from samlab.errors import DataError
    from samlab.tools.track import run_track

    tracker = {"preset": args.tracker} if args.tracker else {}
    tracker.update({k: v for k, v in (("max_distance", args.max_distance), ("fps", args.fps)) if v is not None})
    try:
        counts = run_track(
            args.config,
            args.frames,
            args.detections,
            args.out,
            args.checkpoint,
            args.device,
            detector=args.detector,
            detector_checkpoint=args.detector_checkpoint,
            detector_score_thr=args.detector_score_thr,
            tracker=tracker,
            out_json=args.out_json,
        )
    except DataError:
        raise  # samlab's own report of a bad file (exit status 1)
    except ValueError as err:  # a bad detector spec or tracker setting
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_result(counts, args.json)
    return 0


TOOLS = [
    Tool(
        None,
        "track",
        "track a detector's boxes through a video with a MASA model; MOTChallenge and TAO results",
        "Associate per-frame detections through the frames of FRAMES with the embeddings of the MASA model of "
        'CONFIG (and CHECKPOINT). Detections come from a file (MOTChallenge det.txt, or JSON {"frames": [{"frame", '
        '"boxes" x1 y1 x2 y2, "scores", "labels"}]}) or from a detector run on each frame: a torchvision detection '
        "model with local weights, an Ultralytics YOLO .pt, or the MASA model's own detection head (masa). The "
        "tracker is the config's model.init_args.tracker, or MASA's preset settings with --tracker; --max-distance "
        "and --fps set the spatial gating. Writes MOTChallenge lines frame,id,x,y,w,h,score,-1,-1,-1 to OUT (for "
        "`samlab eval track`) and, with --out-json, TAO-style results (image_id = frame number, bbox x y w h, "
        "track_id, category_id, segmentation RLE when the detector gives masks).",
        _track_arguments,
        _track,
    ),
]

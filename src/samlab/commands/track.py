"""``samlab track``: multiple-object tracking of a detector's boxes with a MASA model (MOTChallenge results)."""

from __future__ import annotations

import argparse
from pathlib import Path

from samlab.commands import Tool, print_result


def _track_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="samlab config whose model: block is a MASAModule (not with an exported CKPT)"
    )
    parser.add_argument("--frames", required=True, type=Path, help="folder of the video's frames (sorted images)")
    parser.add_argument(
        "--detections", required=True, type=Path, help="MOTChallenge det.txt or JSON detections (frames from 1)"
    )
    parser.add_argument("--out", required=True, type=Path, help="MOTChallenge results file to write (tracks.txt)")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="Lightning checkpoint of the module (samlab fit output), or alone a tracker checkpoint of "
        "`samlab export --format masa`",
    )
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    parser.add_argument("--json", action="store_true", help="print the counts as one JSON object")


def _track(args: argparse.Namespace) -> int:
    from samlab.tools.track import run_track

    counts = run_track(args.config, args.frames, args.detections, args.out, args.checkpoint, args.device)
    print_result(counts, args.json)
    return 0


TOOLS = [
    Tool(
        None,
        "track",
        "track a detector's boxes through a video with a MASA model; MOTChallenge results",
        'Associate per-frame detections (any detector: MOTChallenge det.txt, or JSON {"frames": [{"frame", '
        '"boxes" x1 y1 x2 y2, "scores", "labels"}]}) through the frames of FRAMES with the embeddings of the '
        "MASA model of CONFIG (and CHECKPOINT), using the tracker settings of the config's model.init_args.tracker. "
        "Writes MOTChallenge lines frame,id,x,y,w,h,score,-1,-1,-1 to OUT, for `samlab eval track`.",
        _track_arguments,
        _track,
    ),
]

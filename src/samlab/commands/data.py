"""``samlab data synth|check|stats|extract-frames``: synthetic datasets, validation, counts, frame extraction."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from samlab.commands import Tool, print_result
from samlab.tools.inspection import FORMATS


def _synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--videos", type=int, default=2, help="videos (images for sa1b/coco) to write")
    parser.add_argument("--frames", type=int, default=8, help="annotated frames per video")
    parser.add_argument("--size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"), help="frame size")
    parser.add_argument("--objects", type=int, default=3, help="objects per video or image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=("train", "val"), default="train", help="SA-V layout to write")


def _synth(args: argparse.Namespace) -> int:
    from samlab.data.synth import synthesize

    counts = synthesize(
        args.format,
        args.out,
        videos=args.videos,
        frames=args.frames,
        size=tuple(args.size),
        seed=args.seed,
        objects=args.objects,
        layout=args.layout,
    )
    print(json.dumps(counts))
    return 0


def _dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("root", type=Path, help="dataset folder (COCO: folder or annotation JSON)")
    parser.add_argument("--layout", choices=("train", "val"), help="SA-V layout (default: detected)")


def _check(args: argparse.Namespace) -> int:
    from samlab.tools.inspection import check_dataset

    found = check_dataset(args.format, args.root, layout=args.layout)
    for problem in found:
        print(problem)
    warnings = sum(problem.warning for problem in found)
    errors = len(found) - warnings
    print(f"{errors} problem(s), {warnings} warning(s) in {args.root}", file=sys.stderr)
    return 1 if errors else 0


def _stats_arguments(parser: argparse.ArgumentParser) -> None:
    _dataset_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _stats(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from samlab.tools.inspection import dataset_stats

    print_result(asdict(dataset_stats(args.format, args.root, layout=args.layout)), args.json)
    return 0


def _frames_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality")
    parser.add_argument("--overwrite", action="store_true")


def _frames(args: argparse.Namespace) -> int:
    from samlab.tools.frames import extract_frames

    print_result(
        extract_frames(args.video_dir, args.out, quality=args.quality, overwrite=args.overwrite, progress=True), False
    )
    return 0


TOOLS = [
    Tool(
        "data",
        "synth",
        "write a small synthetic dataset in a format's exact on-disk layout",
        "Write a synthetic dataset (moving textured objects with occlusions, objects leaving and re-entering the "
        "frame, known ground truth) in the exact on-disk layout of FORMAT. Prints its counts (the numbers "
        "`samlab data stats` gives for the folder) as JSON.",
        _synth_arguments,
        _synth,
    ),
    Tool(
        "data",
        "check",
        "validate a dataset folder; lists every problem with its file, exit 1 if any",
        "Read every frame and every annotation of a dataset and list each problem (missing or truncated frames, "
        "corrupt JSON, masks whose size differs from their frame, items without objects) with the file it is in, "
        "and warns about frames without annotation PNG inside a video's annotated range (MOSE, DAVIS, SA-V val). "
        "Exit status 1 when there is any problem (warnings do not count).",
        _dataset_arguments,
        _check,
    ),
    Tool(
        "data",
        "stats",
        "count items, frames, annotated frames, objects and masks; name sparsely annotated videos",
        "Count items (images or videos), frames, annotated frames, objects (distinct objects or masklets) and masks "
        "(non-empty masks) of a dataset folder, and name the sparsely annotated videos (frames without annotation).",
        _stats_arguments,
        _stats,
    ),
    Tool(
        "data",
        "extract-frames",
        "decode SA-V .mp4 videos to OUT/<vid>/%%05d.jpg",
        "Decode every .mp4 under VIDEO_DIR (recursively) to JPEG frames OUT/<vid>/%%05d.jpg, numbered from 0; "
        "videos whose frames are already complete are skipped unless --overwrite.",
        _frames_arguments,
        _frames,
    ),
]

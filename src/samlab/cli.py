"""The ``samlab`` command: ``fit | validate | test | predict`` (LightningCLI) and the ``data | eval | bench`` tools.

The CLI only wires: training commands go to :class:`SamlabCLI`; tools parse their arguments and call functions of
:mod:`samlab.tools`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

TRAINING_COMMANDS = ("fit", "validate", "test", "predict")


def _lightning_cli(argv: Sequence[str] | None) -> None:
    """Run LightningCLI on ``argv`` (None: the process's own arguments)."""
    from samlab.lightning_cli import SamlabCLI

    SamlabCLI(args=None if argv is None else list(argv))


def _data_parser(sub: argparse._SubParsersAction) -> None:
    from samlab.tools.inspection import FORMATS

    data = sub.add_parser("data", help="dataset tools (synthesize, check, count, extract frames)")
    tools = data.add_subparsers(dest="tool", required=True, metavar="TOOL")

    synth = tools.add_parser(
        "synth",
        help="write a small synthetic dataset in a format's exact on-disk layout",
        description="Write a synthetic dataset (moving textured objects with occlusions, objects leaving and "
        "re-entering the frame, known ground truth) in the exact on-disk layout of FORMAT. Prints its counts "
        "(the numbers `samlab data stats` gives for the folder) as JSON.",
    )
    synth.add_argument("--format", required=True, choices=FORMATS)
    synth.add_argument("out", type=Path, help="output folder")
    synth.add_argument("--videos", type=int, default=2, help="videos (images for sa1b/coco) to write")
    synth.add_argument("--frames", type=int, default=8, help="annotated frames per video")
    synth.add_argument("--size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"), help="frame size")
    synth.add_argument("--objects", type=int, default=3, help="objects per video or image")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--layout", choices=("train", "val"), default="train", help="SA-V layout to write")

    check = tools.add_parser(
        "check",
        help="validate a dataset folder; lists every problem with its file, exit 1 if any",
        description="Read every frame and every annotation of a dataset and list each problem (missing or "
        "truncated frames, corrupt JSON, masks whose size differs from their frame, items without objects) "
        "with the file it is in. Exit status 1 when there is any problem.",
    )
    check.add_argument("--format", required=True, choices=FORMATS)
    check.add_argument("root", type=Path, help="dataset folder (COCO: folder or annotation JSON)")
    check.add_argument("--layout", choices=("train", "val"), help="SA-V layout (default: detected)")

    stats = tools.add_parser(
        "stats",
        help="count items, frames, annotated frames, objects and masks",
        description="Count items (images or videos), frames, annotated frames, objects (distinct objects or "
        "masklets) and masks (non-empty masks) of a dataset folder.",
    )
    stats.add_argument("--format", required=True, choices=FORMATS)
    stats.add_argument("root", type=Path, help="dataset folder (COCO: folder or annotation JSON)")
    stats.add_argument("--layout", choices=("train", "val"), help="SA-V layout (default: detected)")
    stats.add_argument("--json", action="store_true", help="print one JSON object")

    frames = tools.add_parser(
        "extract-frames",
        help="decode SA-V .mp4 videos to OUT/<vid>/%%05d.jpg",
        description="Decode every .mp4 under VIDEO_DIR (recursively) to JPEG frames OUT/<vid>/%%05d.jpg, numbered "
        "from 0; videos whose frames are already complete are skipped unless --overwrite.",
    )
    frames.add_argument("video_dir", type=Path)
    frames.add_argument("out", type=Path)
    frames.add_argument("--quality", type=int, default=95, help="JPEG quality")
    frames.add_argument("--overwrite", action="store_true")


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    evaluation = sub.add_parser("eval", help="evaluators (VOS J&F)")
    tools = evaluation.add_subparsers(dest="tool", required=True, metavar="TOOL")
    vos = tools.add_parser(
        "vos",
        help="J, F and J&F of predicted masks against ground truth (DAVIS or SA-V layout)",
        description="Semi-supervised VOS evaluation: J (region IoU), F (boundary F-measure, tolerance 0.008 x image "
        "diagonal) and J&F per object and globally (mean over objects), in percent. GT and PRED are DAVIS layout "
        "(<vid>/<frame>.png, palette index = object id) or SA-V layout (<vid>/<obj:03d>/<frame>.png), detected.",
    )
    vos.add_argument("--gt", required=True, type=Path)
    vos.add_argument("--pred", required=True, type=Path)
    vos.add_argument("--skip-first-last", action="store_true", help="ignore each video's first and last frame")
    vos.add_argument("--json", action="store_true", help="print one JSON object")
    vos.add_argument("--csv", type=Path, help="write per-object rows to this CSV file")
    vos.add_argument("--workers", type=int, default=1, help="processes")


def _bench_parser(sub: argparse._SubParsersAction) -> None:
    from samlab.tools.inspection import FORMATS

    bench = sub.add_parser("bench", help="benchmarks that print figures")
    tools = bench.add_subparsers(dest="tool", required=True, metavar="TOOL")
    data = tools.add_parser(
        "data",
        help="clips per second per worker of the default training pipeline",
        description="Read, sample and augment clips with the default training pipeline (SAM 2's MOSE recipe) in "
        "one process on one core, and print clips per second.",
    )
    data.add_argument("--format", required=True, choices=FORMATS)
    data.add_argument("root", type=Path)
    data.add_argument("--num-frames", type=int, default=8)
    data.add_argument("--size", type=int, default=1024)
    data.add_argument("--max-num-objects", type=int, default=3)
    data.add_argument("--clips", type=int, default=30)
    data.add_argument(
        "--normalize-on-cpu",
        action="store_true",
        help="also normalise to float32 in the worker (the default pipeline does it on the device)",
    )
    data.add_argument("--json", action="store_true")
    index = tools.add_parser(
        "index",
        help="time to index a dataset folder",
        description="Time the indexing of a dataset folder (no JSON parsing, no image decoding).",
    )
    index.add_argument("--format", default="sa1b", choices=("sa1b",))
    index.add_argument("root", type=Path)
    index.add_argument("--file-list", type=Path)
    index.add_argument("--json", action="store_true")
    train = tools.add_parser(
        "train",
        help="training frames/s and peak GPU memory of a recipe",
        description="Run a recipe's training steps through the Trainer (no validation, checkpoints or loggers) and "
        "print frames per second (T x B per step) and peak GPU memory after warm-up. Extra arguments are passed "
        "to the config as CLI overrides, e.g. --data.init_args.root=... --trainer.precision=bf16-mixed.",
    )
    train.add_argument("--config", required=True)
    train.add_argument("--steps", type=int, default=20, help="timed steps")
    train.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    train.add_argument("--json", action="store_true")


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


def _run_tool(args: argparse.Namespace) -> int:
    if args.command == "data":
        if args.tool == "synth":
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
        if args.tool == "check":
            from samlab.tools.inspection import check_dataset

            problems = check_dataset(args.format, args.root, layout=args.layout)
            for problem in problems:
                print(problem)
            print(f"{len(problems)} problem(s) in {args.root}", file=sys.stderr)
            return 1 if problems else 0
        if args.tool == "stats":
            from dataclasses import asdict

            from samlab.tools.inspection import dataset_stats

            _print(asdict(dataset_stats(args.format, args.root, layout=args.layout)), args.json)
            return 0
        if args.tool == "extract-frames":
            from samlab.tools.frames import extract_frames

            _print(extract_frames(args.video_dir, args.out, quality=args.quality, overwrite=args.overwrite), False)
            return 0
    if args.command == "eval" and args.tool == "vos":
        from samlab.tools.eval_vos import run_eval_vos

        return run_eval_vos(args.gt, args.pred, args.skip_first_last, args.json, args.csv, workers=args.workers)
    if args.command == "bench":
        if args.tool == "data":
            from samlab.tools.bench_data import bench_data

            result = bench_data(
                args.root,
                format=args.format,
                num_frames=args.num_frames,
                size=args.size,
                max_num_objects=args.max_num_objects,
                clips=args.clips,
                normalize=args.normalize_on_cpu,
            )
            _print(result, args.json)
            return 0
        if args.tool == "index":
            from samlab.tools.bench_index import bench_index

            _print(bench_index(args.root, format=args.format, file_list=args.file_list), args.json)
            return 0
        if args.tool == "train":
            from samlab.tools.bench_train import bench_train

            _print(bench_train(args.config, args.steps, args.warmup, overrides=args.overrides), args.json)
            return 0
    raise AssertionError(f"unhandled command {args.command} {args.tool}")


def build_tool_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``data``, ``eval`` and ``bench`` tools (training commands are LightningCLI's)."""
    parser = argparse.ArgumentParser(
        prog="samlab",
        description="samlab: train and evaluate Segment-Anything-family models. Training: samlab "
        "{fit,validate,test,predict} --config FILE.yaml (see `samlab fit --help`).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in TRAINING_COMMANDS:
        sub.add_parser(command, help=f"LightningCLI {command} (samlab {command} --help)")
    _data_parser(sub)
    _eval_parser(sub)
    _bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``samlab`` console script; returns the exit status."""
    from samlab.errors import DataError

    given = list(sys.argv[1:] if argv is None else argv)
    if given and given[0] in TRAINING_COMMANDS:
        _lightning_cli(argv)
        return 0
    args, extra = build_tool_parser().parse_known_args(given)
    if extra and not (args.command == "bench" and args.tool == "train"):
        build_tool_parser().error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    try:
        return _run_tool(args)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

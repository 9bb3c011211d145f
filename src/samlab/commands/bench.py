"""``samlab bench data|index|train|memory``: benchmarks that print figures (they assert nothing).

Every command computes one dict of figures and prints it (``--json``: one JSON object) through :func:`_bench`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from samlab.commands import Tool, print_result
from samlab.tools.inspection import FORMATS


def _dataset_arguments(parser: argparse.ArgumentParser, formats: tuple[str, ...], default: str | None) -> None:
    parser.add_argument("--format", choices=formats, default=default, required=default is None)
    parser.add_argument("root", type=Path)


def _config_argument(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument("--config", required=True, help=help)


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    _dataset_arguments(parser, FORMATS, default=None)
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--max-num-objects", type=int, default=3)
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument(
        "--normalize-on-cpu",
        action="store_true",
        help="also normalise to float32 in the worker (the default pipeline does it on the device)",
    )
    parser.add_argument(
        "--antialias", action="store_true", help="shrink frames as PIL does first (SAM2TrainTransform(antialias=True))"
    )


def _data(args: argparse.Namespace) -> dict:
    from samlab.tools.bench_data import bench_data

    return bench_data(
        args.root,
        format=args.format,
        num_frames=args.num_frames,
        size=args.size,
        max_num_objects=args.max_num_objects,
        clips=args.clips,
        normalize=args.normalize_on_cpu,
        antialias=args.antialias,
    )


def _index_arguments(parser: argparse.ArgumentParser) -> None:
    _dataset_arguments(parser, ("sa1b",), default="sa1b")
    parser.add_argument("--file-list", type=Path)


def _index(args: argparse.Namespace) -> dict:
    from samlab.tools.bench_index import bench_index

    return bench_index(args.root, format=args.format, file_list=args.file_list)


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    _config_argument(parser)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument(
        "--pinned-plan", choices=("mask", "box", "clicks"), help="SAM 2: the same prompt plan on every step"
    )
    parser.add_argument(
        "--cached-batch", action="store_true", help="load one batch and reuse it (times the model step only)"
    )


def _train(args: argparse.Namespace) -> dict:
    from samlab.tools.bench_train import bench_train

    return bench_train(
        args.config,
        args.steps,
        args.warmup,
        overrides=args.overrides,
        pinned_plan=args.pinned_plan,
        cached_batch=args.cached_batch,
    )


def _memory_arguments(parser: argparse.ArgumentParser) -> None:
    _config_argument(parser, help="a SAM 2 recipe (samlab fit YAML)")
    parser.add_argument(
        "--option-sets",
        nargs="+",
        help="option sets to account (default: all): recipe ckpt_encoder ckpt_all frozen_encoder "
        "frozen_encoder_bf16 frozen_encoder_bf16_ckpt_memory",
    )
    parser.add_argument("--reduced-frames", type=int, default=3, help="frames of the measured steps (and one more)")
    parser.add_argument("--num-frames", type=int, help="frames to extrapolate to (default: the recipe's)")
    parser.add_argument("--num-objects", type=int, help="objects per clip (default: the recipe's max_num_objects)")
    parser.add_argument("--no-official", action="store_true", help="skip the official step's account")


def _memory(args: argparse.Namespace) -> dict:
    from samlab.tools.bench_memory import bench_memory

    return bench_memory(
        args.config,
        option_sets=args.option_sets,
        reduced_frames=args.reduced_frames,
        num_frames=args.num_frames,
        num_objects=args.num_objects,
        official=not args.no_official,
    )


def _bench(
    name: str,
    help: str,
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    figures: Callable[[argparse.Namespace], dict],
    pass_extra: bool = False,
) -> Tool:
    """The ``samlab bench NAME`` tool: ``add_arguments`` plus ``--json``; runs ``figures`` and prints its dict."""

    def arguments(parser: argparse.ArgumentParser) -> None:
        add_arguments(parser)
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def run(args: argparse.Namespace) -> int:
        print_result(figures(args), args.json)
        return 0

    return Tool("bench", name, help, description, arguments, run, pass_extra=pass_extra)


TOOLS = [
    _bench(
        "data",
        "clips per second per worker of the default training pipeline",
        "Read, sample and augment clips with the default training pipeline (SAM 2's MOSE recipe) in one process on "
        "one core, and print clips per second.",
        _data_arguments,
        _data,
    ),
    _bench(
        "index",
        "time to index a dataset folder",
        "Time the indexing of a dataset folder (no JSON parsing, no image decoding).",
        _index_arguments,
        _index,
    ),
    _bench(
        "train",
        "training frames/s and peak GPU memory of a recipe",
        "Run a recipe's training steps through the Trainer (no validation, checkpoints or loggers) and print frames "
        "per second (T x B per step), the data wait per step, the number of distinct prompt plans and peak GPU "
        "memory after warm-up. Extra arguments are passed to the config as CLI overrides, e.g. "
        "--data.init_args.root=... --trainer.precision=bf16-mixed.",
        _train_arguments,
        _train,
        pass_extra=True,
    ),
    _bench(
        "memory",
        "memory account of a SAM 2 training step per option set",
        "Account for the memory of one SAM 2 training step of a recipe on fake tensors (no data, no device): "
        "weights, gradients, AdamW state, DDP buckets and the tensors saved for backward per frame, extrapolated "
        "to the recipe's frames, with the expected peak for each option set (activation checkpointing, frozen "
        "image encoder, bf16 frozen weights) and for the official SAM2Train step on the same inputs.",
        _memory_arguments,
        _memory,
    ),
]

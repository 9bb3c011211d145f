"""``samlab ckpt average``: checkpoint tools."""

from __future__ import annotations

import argparse
from pathlib import Path

from samlab.commands import Tool, print_result


def _average_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", type=Path, nargs="+", metavar="CKPT", help="checkpoints to average")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="averaged checkpoint")
    parser.add_argument("--json", action="store_true", help="print the counts as one JSON object")


def _average(args: argparse.Namespace) -> int:
    from samlab.tools.ckpt_average import average_checkpoints

    print_result(average_checkpoints(args.checkpoints, args.output), args.json)
    return 0


TOOLS = [
    Tool(
        "ckpt",
        "average",
        "uniform average of several checkpoints' weights (Lightning .ckpt or state dicts)",
        "Average the floating-point weights of CKPT files uniformly (integer buffers are copied from the first) and "
        "write a checkpoint that loads where the first one does: Lightning checkpoints keep the first one's other "
        "fields (hyper-parameters, epoch, ...). Weight names and shapes must match; a mismatch names the file.",
        _average_arguments,
        _average,
    ),
]

"""The ``samlab`` command: ``fit | validate | test | predict`` (LightningCLI) and the tool commands.

The CLI only wires: training commands go to :class:`SamlabCLI`; tool commands are the ``TOOLS`` of the modules in
:data:`COMMAND_MODULES` (see :mod:`samlab.commands`), which call functions of :mod:`samlab.tools`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from samlab.commands import Tool

TRAINING_COMMANDS = ("fit", "validate", "test", "predict")


SAMLAB_CLASS_MODULES = (
    "samlab.models.sam2.module",
    "samlab.models.sam.module",
    "samlab.models.masa.module",
    "samlab.models.directsam.module",
    "samlab.data.datamodules",
    "samlab.data.pairs.datamodule",
    "samlab.data.boundaries.datamodule",
)
"""Modules of samlab's LightningModules and LightningDataModules: imported for ``--help`` only, so that the help's
"known subclasses" of ``--model`` and ``--data`` list them (a run imports just the classes its config names)."""


def _lightning_cli(argv: Sequence[str] | None) -> None:
    """Run LightningCLI on ``argv`` (None: the process's own arguments)."""
    from samlab.lightning_cli import SamlabCLI

    given = sys.argv[1:] if argv is None else list(argv)
    if "-h" in given or "--help" in given:
        for name in SAMLAB_CLASS_MODULES:
            importlib.import_module(name)
    SamlabCLI(args=None if argv is None else list(argv))


COMMAND_MODULES = (
    "samlab.commands.data",
    "samlab.commands.coco",
    "samlab.commands.masa_data",
    "samlab.commands.evaluation",
    "samlab.commands.coco_eval",
    "samlab.commands.tracking",
    "samlab.commands.contour",
    "samlab.commands.ckpt",
    "samlab.commands.track",
    "samlab.commands.export",
    "samlab.commands.bench",
)
"""Modules whose ``TOOLS`` lists make up the tool commands, in ``--help`` order."""

GROUPS = {
    "data": "dataset tools (synthesize, check, count, convert, extract)",
    "eval": "evaluators (VOS J&F, COCO AP, tracking, contour recall)",
    "ckpt": "checkpoint tools",
    "bench": "benchmarks that print figures",
}


def tools() -> list[Tool]:
    """Every tool command, from the ``TOOLS`` list of each module in :data:`COMMAND_MODULES`."""
    return [tool for name in COMMAND_MODULES for tool in importlib.import_module(name).TOOLS]


def build_tool_parser() -> argparse.ArgumentParser:
    """The argparse parser of the tool commands (training commands are LightningCLI's)."""
    parser = argparse.ArgumentParser(
        prog="samlab",
        description="samlab: train and evaluate Segment-Anything-family models. Training: samlab "
        "{fit,validate,test,predict} --config FILE.yaml (see `samlab fit --help`).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in TRAINING_COMMANDS:
        sub.add_parser(command, help=f"LightningCLI {command} (samlab {command} --help)")
    all_tools = tools()
    group_parsers = {}
    for group, help_text in GROUPS.items():
        if any(tool.group == group for tool in all_tools):
            group_parser = sub.add_parser(group, help=help_text)
            group_parsers[group] = group_parser.add_subparsers(dest="tool", required=True, metavar="TOOL")
    for tool in all_tools:
        parent = sub if tool.group is None else group_parsers[tool.group]
        parser_of_tool = parent.add_parser(tool.name, help=tool.help, description=tool.description)
        tool.add_arguments(parser_of_tool)
        parser_of_tool.set_defaults(tool_spec=tool)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``samlab`` console script; returns the exit status."""
    from samlab.errors import ConfigError, DataError

    given = list(sys.argv[1:] if argv is None else argv)
    if given and given[0] in TRAINING_COMMANDS:
        try:
            _lightning_cli(argv)
        except (ConfigError, DataError) as err:
            # The explanation is the whole story (cause, config key, fix): no traceback to bury it.
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    parser = build_tool_parser()
    args, extra = parser.parse_known_args(given)
    if extra and not args.tool_spec.pass_extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    try:
        return args.tool_spec.run(args)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Tool commands of the ``samlab`` CLI (``samlab data|eval|bench|ckpt ...`` and top-level tools such as ``track``).

Each module of this package lists its commands in ``TOOLS``; :mod:`samlab.cli` collects them from the modules named
in ``samlab.cli.COMMAND_MODULES``. Modules import only the standard library at import time (``samlab --help`` stays
fast); a command's ``run`` imports what it needs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Tool:
    """One command: ``samlab GROUP NAME ...`` (or ``samlab NAME ...`` when ``group`` is None).

    Args:
        group: the command group ("data", "eval", "bench", "ckpt"), or None for a top-level command.
        name: the command's name.
        help: one line for the group's command list.
        description: the paragraph of the command's ``--help``.
        add_arguments: adds the command's arguments to its parser.
        run: runs the command on the parsed arguments and returns the exit status.
        pass_extra: unknown arguments are passed on in ``args.overrides`` instead of being an error.
    """

    group: str | None
    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    pass_extra: bool = False


def print_result(result: dict, as_json: bool) -> None:
    """Print ``result`` as one JSON object (``as_json``) or as ``key: value`` lines."""
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")

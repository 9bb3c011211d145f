"""The CLI reference page (``docs/cli.md``), generated from the ``--help`` of every command.

Regenerate with ``python -m samlab.tools.cli_reference > docs/cli.md``; a test keeps the page equal to the output.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager

HEADER = """# CLI reference

Generated from `--help` by `python -m samlab.tools.cli_reference > docs/cli.md` (a test checks it is current).

The training commands `samlab fit | validate | test | predict` are LightningCLI's: `samlab fit --help` lists every
option of the Trainer, and `samlab fit --config FILE.yaml --print_config` prints a recipe's resolved config with the
options of its model and data module (`--model.help CLASS` / `--data.help CLASS` describe one class). The tool
commands follow.
"""


@contextmanager
def _fixed_width(columns: int) -> Iterator[None]:
    """argparse wraps help to $COLUMNS: fix it so the page does not depend on the terminal."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_reference(columns: int = 100) -> str:
    """Markdown with the ``--help`` text of ``samlab`` and of every tool command, in ``--help`` order."""
    from samlab.cli import TRAINING_COMMANDS, build_tool_parser

    with _fixed_width(columns):
        parser = build_tool_parser()
        sections = [HEADER, "## samlab\n", f"```text\n{parser.format_help()}```\n"]
        for name, command in _subparsers(parser).items():
            if name in TRAINING_COMMANDS:
                continue
            tools = _subparsers(command)
            for tool_name, tool in tools.items() if tools else [(None, command)]:
                title = f"samlab {name}" + (f" {tool_name}" if tool_name else "")
                sections += [f"## {title}\n", f"```text\n{tool.format_help()}```\n"]
    return "\n".join(sections)


if __name__ == "__main__":
    print(cli_reference(), end="")

"""The error every reader and tool raises for bad input: it always names the file and what is wrong."""

from __future__ import annotations

from os import PathLike


class DataError(ValueError):
    """Bad input data.

    ``path`` is the offending file or folder, ``message`` says what is wrong; ``str(err)`` is
    ``"<path>: <message>"`` so that a log line is enough to find the problem.
    """

    def __init__(self, path: str | PathLike[str], message: str) -> None:
        self.path = str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")

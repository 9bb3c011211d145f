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


class ConfigError(ValueError):
    """A command that cannot run as configured, explained in three parts.

    ``cause``: what went wrong (naming the file when there is one); ``key``: the dotted config key to change
    (``model.init_args.checkpoint``), or None; ``fix``: what to do; ``where``: ``file:line`` that raised the cause.
    ``str(err)`` puts one part per line, the cause first, so the last lines of the output are the whole story.
    """

    def __init__(self, cause: str, key: str | None = None, fix: str | None = None, where: str = "") -> None:
        self.cause = cause
        self.key = key
        self.fix = fix
        self.where = where
        lines = [cause]
        if key:
            lines.append(f"  config key: {key}")
        if fix:
            lines.append(f"  fix: {fix}")
        if where:
            lines.append(f"  (raised at {where})")
        super().__init__("\n".join(lines))


def with_skip_hint(error: DataError) -> DataError:
    """``error`` with the advice to set ``skip_bad_samples: true`` (for data sets that can skip bad samples)."""
    hint = "skip_bad_samples: true in the data module (data.init_args) skips, logs and counts such samples"
    if hint in error.message:
        return error
    return DataError(error.path, f"{error.message} ({hint})")

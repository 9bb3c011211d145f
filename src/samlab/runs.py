"""Run folders and checkpoint files: one training run writes everything into ``<root>/version_<N>/``.

A run folder holds the TensorBoard events, ``metrics.csv``, ``hparams.yaml``, ``config.yaml`` and
``checkpoints/`` (with ``last.ckpt``) of one run; ``<root>`` is the recipe's ``trainer.default_root_dir``. A run
resumed from one of its checkpoints keeps writing into the same folder. Checkpoints are written atomically
(:class:`AtomicCheckpointIO`), so a run killed at any moment leaves the previous ``last.ckpt`` intact.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

LAST_CHECKPOINT = "last.ckpt"
VERSION_PATTERN = re.compile(r"^version_(\d+)$")


def run_versions(root: str | Path) -> dict[int, Path]:
    """The run folders ``<root>/version_<N>`` that exist, by ``N``."""
    root = Path(root)
    if not root.is_dir():
        return {}
    found = {}
    for child in root.iterdir():
        match = VERSION_PATTERN.match(child.name)
        if match and child.is_dir():
            found[int(match.group(1))] = child
    return found


def next_version(roots: list[str | Path]) -> int:
    """The smallest ``N`` such that no ``<root>/version_<M>`` with ``M >= N`` exists in any of ``roots``."""
    taken = [n for root in roots for n in run_versions(root)]
    return max(taken) + 1 if taken else 0


def newest_last_checkpoint(root: str | Path) -> Path | None:
    """``<root>/version_<N>/checkpoints/last.ckpt`` written most recently, or None when no run of ``root`` has one."""
    candidates = [folder / "checkpoints" / LAST_CHECKPOINT for folder in run_versions(root).values()]
    existing = [path for path in candidates if path.is_file()]
    return max(existing, key=lambda path: path.stat().st_mtime_ns) if existing else None


def run_folder_of(checkpoint: str | Path, root: str | Path) -> Path | None:
    """The run folder ``<root>/version_<N>`` that ``checkpoint`` (``.../checkpoints/<file>.ckpt``) belongs to, or None
    when it is not a checkpoint of a run of ``root``."""
    folder = Path(checkpoint).resolve().parent.parent
    if Path(checkpoint).resolve().parent.name != "checkpoints" or not VERSION_PATTERN.match(folder.name):
        return None
    return folder if folder.parent == Path(root).resolve() else None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, writing local files atomically: ``torch.save`` to a temporary file next to the
    target, flushed to disk (``fsync``), then renamed over the target (``os.replace``). A process killed while
    writing leaves the previous file intact (Lightning's own IO writes through a temporary file in the system's temp
    folder and *copies* it when that is on another file system, which a kill can truncate). Remote paths
    (``s3://`` …) are left to Lightning's IO."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with partial.open("wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)

"""``samlab ckpt average``: the uniform average of several checkpoints' weights (a "model soup" of one run)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from samlab.errors import DataError

# Where a checkpoint keeps its weights: Lightning's ``state_dict``, SAM 2's official ``model``; else the file is one.
WEIGHT_KEYS = ("state_dict", "model")


def _weights_key(checkpoint: Any, path: Path) -> str | None:
    """The key of ``checkpoint`` holding its weights, or None when the checkpoint is a plain state dict."""
    if not isinstance(checkpoint, dict):
        raise DataError(path, f"not a checkpoint (a {type(checkpoint).__name__}, not a dict)")
    for key in WEIGHT_KEYS:
        if isinstance(checkpoint.get(key), dict):
            return key
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return None
    raise DataError(path, f"no weights found: neither a state dict nor a dict with one of {list(WEIGHT_KEYS)}")


def average_checkpoints(
    paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], progress: bool = True
) -> dict[str, Any]:
    """Write to ``out`` the checkpoint whose weights are the uniform average of those of ``paths``.

    Checkpoints: Lightning ``.ckpt`` files (weights under ``state_dict``), SAM 2-style ``{"model": state_dict}``
    files or plain state dicts; all must be of the first one's kind. Floating-point tensors are averaged (in
    float64, then cast back to their dtype); integer and bool tensors (counters, indices) are copied from the first
    checkpoint. Every other field (hyper-parameters, epoch, optimizer states, ...) comes from the first checkpoint,
    so the output loads where the first does. A checkpoint whose weight names or shapes differ from the first's is
    a :class:`DataError` naming it and the differing keys. Files are loaded with ``weights_only=False``: average only
    checkpoints you trust.

    Returns ``checkpoints`` (how many were averaged), ``averaged`` and ``copied`` (tensor counts).
    """
    from samlab.progress import track

    if not paths:
        raise ValueError("average_checkpoints needs at least one checkpoint")
    files = [Path(p) for p in paths]
    first = torch.load(files[0], map_location="cpu", weights_only=False)
    key = _weights_key(first, files[0])
    reference = first if key is None else first[key]
    floating = [name for name, value in reference.items() if torch.is_floating_point(value)]
    sums = {name: reference[name].to(torch.float64) for name in floating}
    for path in track(files[1:], "average", unit="ckpt", enabled=progress):
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        if _weights_key(checkpoint, path) != key:
            raise DataError(path, f"weights are under {_weights_key(checkpoint, path)!r}, not {key!r} as in {files[0]}")
        weights = checkpoint if key is None else checkpoint[key]
        missing, extra = sorted(set(reference) - set(weights)), sorted(set(weights) - set(reference))
        if missing or extra:
            raise DataError(path, f"weights differ from {files[0]}: missing {missing[:5]}, unexpected {extra[:5]}")
        for name, value in reference.items():
            if weights[name].shape != value.shape:
                raise DataError(
                    path, f"'{name}' has shape {list(weights[name].shape)}, {list(value.shape)} in {files[0]}"
                )
        for name in floating:
            sums[name] += weights[name].to(torch.float64)
    averaged = dict(reference)
    for name in floating:
        averaged[name] = (sums[name] / len(files)).to(reference[name].dtype)
    if key is None:
        result: dict[str, Any] = averaged
    else:
        result = {**first, key: averaged}
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written next to the target then renamed: an interrupted run never leaves a truncated checkpoint.
    partial = target.with_name(target.name + ".partial")
    torch.save(result, partial)
    os.replace(partial, target)
    return {"checkpoints": len(files), "averaged": len(floating), "copied": len(reference) - len(floating)}

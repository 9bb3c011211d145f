"""``samlab eval contour``: effective contour recall, tokens and boundary precision/recall/F of boundary maps.

GT is a folder of boundary PNGs (non-zero = boundary); PRED a folder of 8-bit probability PNGs (probability =
value / 255) with the same file names (subfolders allowed). Scores are the means over images of
:mod:`samlab.metrics.contour_scores` (what :class:`samlab.metrics.contour.ContourRecall` logs in validation; this
tool imports no torch); images whose ground truth is empty outside the border band are
skipped, as DirectSAM does. The defaults are DirectSAM's ``evaluate.py``: tolerance 5, thresholds 0.1-0.5 (its
ground truth is the thickness-2 boundary at 1024 px: ``samlab.data.boundaries.label_map_target(label_map, 1024,
2)``); :func:`contour_table` prints its table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from samlab.data.formats.base import read_label_png
from samlab.errors import DataError
from samlab.metrics.contour_scores import (
    DEFAULT_THRESHOLDS,
    DEFAULT_TOLERANCE,
    SCORE_FIELDS,
    score_rows,
    threshold_scores,
)
from samlab.progress import track


def boundary_pngs(folder: Path) -> list[Path]:
    """The ``.png`` files under ``folder`` (recursively), sorted, as paths relative to it."""
    if not folder.is_dir():
        raise DataError(folder, "boundary folder does not exist")
    files = sorted(p.relative_to(folder) for p in folder.rglob("*.png"))
    if not files:
        raise DataError(folder, "no .png boundary map in this folder")
    return files


def evaluate_contours(
    gt: str | Path,
    pred: str | Path,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    tolerance: int = DEFAULT_TOLERANCE,
    progress: bool = True,
) -> dict:
    """Score every probability PNG of ``pred`` against the boundary PNG of ``gt`` with the same name.

    Returns ``{"thresholds": [{"threshold", "recall", "num_tokens", "precision", "boundary_recall", "f"}, ...],
    "num_images": scored images, "num_skipped": images with an empty ground truth}``; ``recall`` is the effective
    contour recall. Raises :class:`DataError` naming the file when a prediction is missing or its size differs from
    its ground truth's.
    """
    gt, pred = Path(gt), Path(pred)
    names = boundary_pngs(gt)
    thresholds = tuple(float(t) for t in thresholds)
    sums, scored = np.zeros((len(SCORE_FIELDS), len(thresholds))), 0
    for name in track(names, "contour recall", unit="img", enabled=progress):
        target = read_label_png(gt / name) > 0
        pred_path = pred / name
        if not pred_path.is_file():
            raise DataError(pred_path, f"no prediction for ground truth {gt / name}")
        probabilities = read_label_png(pred_path)
        if probabilities.shape != target.shape:
            raise DataError(
                pred_path,
                f"prediction is {probabilities.shape[1]}x{probabilities.shape[0]} (WxH) but its ground truth is "
                f"{target.shape[1]}x{target.shape[0]}",
            )
        scores = threshold_scores(target, probabilities.astype(np.float32) / np.float32(255.0), thresholds, tolerance)
        if scores is not None:
            sums += score_rows(scores)
            scored += 1
    keys = ("recall", "num_tokens", "precision", "boundary_recall", "f")  # the order of SCORE_FIELDS
    rows = [
        {"threshold": t} | {key: float(sums[i, j] / scored) if scored else None for i, key in enumerate(keys)}
        for j, t in enumerate(thresholds)
    ]
    return {"thresholds": rows, "num_images": scored, "num_skipped": len(names) - scored}


def contour_table(result: dict) -> str:
    """DirectSAM's ``evaluate.py`` summary of :func:`evaluate_contours`'s result, one row per threshold:
    ``threshold``, ``mean_recall`` (effective contour recall) and ``mean_num_tokens``, tab-separated."""
    lines = ["threshold\tmean_recall\tmean_num_tokens"]
    for row in result["thresholds"]:
        recall, tokens = row["recall"], row["num_tokens"]
        cells = ["nan" if v is None else f"{v:.6g}" for v in (recall, tokens)]
        lines.append("\t".join([f"{row['threshold']:g}", *cells]))
    return "\n".join(lines)

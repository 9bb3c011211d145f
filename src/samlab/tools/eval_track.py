"""``samlab eval track``: tracking scores of results against ground truth.

``--metric hota`` (default): HOTA, AssA, DetA, MOTA and IDF1 of MOTChallenge results (TrackEval); ``teta``: TETA,
LocA, AssocA and ClsA of TAO-format results (:mod:`samlab.metrics.teta`); ``bdd100k``: BDD100K MOT's mHOTA, mMOTA
and mIDF1 (TrackEval's BDD100K).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from samlab.data.formats.tao import read_tao_ground_truth, read_tao_results
from samlab.errors import DataError
from samlab.metrics.teta import FIELDS as TETA_FIELDS
from samlab.metrics.teta import teta
from samlab.metrics.tracking import SCORES, evaluate_bdd100k, evaluate_mot

METRICS = ("hota", "teta", "bdd100k")
_BDD_SCORES = ("mHOTA", "mMOTA", "mIDF1", "HOTA", "MOTA", "IDF1")


def _table(rows: list[tuple[str, dict[str, float]]], names: Sequence[str], first: str) -> str:
    width = max(len(first), *(len(name) for name, _ in rows))
    lines = [f"{first:<{width}}  " + "  ".join(f"{name:>7}" for name in names)]
    lines += [f"{name:<{width}}  " + "  ".join(f"{scores[s]:7.2f}" for s in names) for name, scores in rows]
    return "\n".join(lines)


def format_table(result: dict[str, Any], metric: str = "hota") -> str:
    """A text table of a result of :func:`evaluate_track`: per sequence (hota) or class (teta, bdd100k), then
    ``ALL``."""
    if metric == "teta":
        return _table([*result["per_class"].items(), ("ALL", result)], TETA_FIELDS[:4], "class")
    if metric == "bdd100k":
        rows = [
            (name, {**s, **{f"m{k}": s[k] for k in ("HOTA", "MOTA", "IDF1")}})
            for name, s in result["per_class"].items()
        ]
        return _table([*rows, ("ALL", result)], _BDD_SCORES, "class")
    return _table([*result["per_sequence"].items(), ("ALL", result)], SCORES, "sequence")


def evaluate_track(
    gt: str | os.PathLike[str],
    pred: str | os.PathLike[str],
    metric: str = "hota",
    sequences: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score ``pred`` against ``gt``: ``hota`` (MOTChallenge folders, :func:`~samlab.metrics.tracking.evaluate_mot`),
    ``teta`` (TAO ground-truth JSON and results JSON, :func:`~samlab.metrics.teta.teta`) or ``bdd100k`` (folders of
    per-sequence JSON, :func:`~samlab.metrics.tracking.evaluate_bdd100k`)."""
    if metric not in METRICS:
        raise ValueError(f"unknown tracking metric {metric!r}; known: {', '.join(METRICS)}")
    if sequences is not None and metric != "hota":
        raise ValueError("--seq chooses MOTChallenge sequences (--metric hota) only")
    if metric == "hota":
        return evaluate_mot(gt, pred, sequences)
    if metric == "bdd100k":
        return evaluate_bdd100k(gt, pred)
    ground_truth = read_tao_ground_truth(gt)
    results = read_tao_results(pred, image_ids=[image["id"] for image in ground_truth["images"]])
    try:
        return teta(ground_truth, results)
    except ValueError as err:
        raise DataError(Path(pred), str(err)) from None


def run_eval_track(
    gt: str | os.PathLike[str],
    pred: str | os.PathLike[str],
    sequences: Sequence[str] | None = None,
    as_json: bool = False,
    metric: str = "hota",
) -> int:
    """Evaluate ``pred`` against ``gt`` and print the result: one JSON object (exactly what
    :func:`evaluate_track` returns) when ``as_json``, else a table. Returns 0."""
    result = evaluate_track(gt, pred, metric, sequences)
    print(json.dumps(result) if as_json else format_table(result, metric))
    return 0

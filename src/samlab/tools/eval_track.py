"""``samlab eval track``: HOTA, AssA, DetA, MOTA and IDF1 of MOTChallenge tracking results (via TrackEval)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from samlab.metrics.tracking import SCORES, evaluate_mot


def format_table(result: dict[str, Any]) -> str:
    """A text table of :func:`~samlab.metrics.tracking.evaluate_mot`'s result: one row per sequence, then ``ALL``."""
    rows = [*result["per_sequence"].items(), ("ALL", result)]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'sequence':<{width}}  " + "  ".join(f"{name:>6}" for name in SCORES)]
    lines += [f"{name:<{width}}  " + "  ".join(f"{scores[s]:6.2f}" for s in SCORES) for name, scores in rows]
    return "\n".join(lines)


def run_eval_track(
    gt_root: str | os.PathLike[str],
    pred_root: str | os.PathLike[str],
    sequences: Sequence[str] | None = None,
    as_json: bool = False,
) -> int:
    """Evaluate ``pred_root`` against ``gt_root`` and print the result: one JSON object (exactly what
    :func:`~samlab.metrics.tracking.evaluate_mot` returns) when ``as_json``, else a table. Returns 0."""
    result = evaluate_mot(gt_root, pred_root, sequences)
    print(json.dumps(result) if as_json else format_table(result))
    return 0

"""Multiple-object tracking scores (HOTA, AssA, DetA, MOTA, IDF1; BDD100K's mHOTA, mMOTA, mIDF1) computed by
TrackEval.

The numbers are TrackEval's own (the reference implementation of the HOTA paper and of the MOTChallenge
benchmark), run on its ``MotChallenge2DBox`` dataset; this module only arranges the folders and reads the results.
Ground truth and predictions are in the MOTChallenge layout::

    GT/<seq>/gt/gt.txt        frame,id,x,y,w,h,conf,class,visibility (conf 0 rows are ignored, class 1 is scored)
    GT/<seq>/seqinfo.ini      [Sequence] seqLength=...
    PRED/<seq>.txt            frame,id,x,y,w,h,score,-1,-1,-1

Matching is TrackEval's default for MOT17: boxes match at IoU >= 0.5 (CLEAR, Identity), HOTA averages over IoU
thresholds 0.05..0.95, and predictions matched to ground truth of distractor classes are removed.

BDD100K MOT (:func:`evaluate_bdd100k`) is TrackEval's ``BDD100K`` dataset: ``GT/<seq>.json`` and
``PRED/<seq>.json`` in BDD100K's scalabel layout (a list of frames ``{"name", "videoName", "index", "labels":
[{"id", "category", "box2d": {"x1", "y1", "x2", "y2"}[, "attributes": {"Crowd": bool}]}]}``), its 8 classes;
"m" scores are averaged over the classes, the plain ones over all detections (TrackEval's ``cls_comb_cls_av``
and ``cls_comb_det_av``). TETA (TAO) lives in :mod:`samlab.metrics.teta`.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samlab.errors import DataError

SCORES = ("HOTA", "AssA", "DetA", "MOTA", "IDF1")
"""The scores :func:`evaluate_mot` returns, in percent."""

_COMBINED = "COMBINED_SEQ"
_CLASS = "pedestrian"  # TrackEval's name of MOTChallenge class 1


def list_sequences(gt_root: str | os.PathLike[str]) -> list[str]:
    """Names of the sequences of a MOTChallenge ground-truth folder: subfolders holding ``gt/gt.txt``, sorted."""
    gt_root = Path(gt_root)
    if not gt_root.is_dir():
        raise DataError(gt_root, "ground-truth folder does not exist")
    return sorted(p.name for p in gt_root.iterdir() if (p / "gt" / "gt.txt").is_file())


def _trackeval():
    try:
        import trackeval
    except ImportError as err:
        raise ImportError(
            "samlab eval track needs TrackEval: pip install --no-deps 'trackeval>=1.3,<2' (make install does it; "
            "--no-deps keeps opencv-python-headless, its other needs are samlab's own)"
        ) from err
    return trackeval


_EVAL_CONFIG = {
    "USE_PARALLEL": False,
    "BREAK_ON_ERROR": True,
    "LOG_ON_ERROR": None,
    "PRINT_RESULTS": False,
    "PRINT_CONFIG": False,
    "TIME_PROGRESS": False,
    "OUTPUT_SUMMARY": False,
    "OUTPUT_DETAILED": False,
    "PLOT_CURVES": False,
}


def _run_trackeval(dataset_name: str, dataset_config: dict[str, Any], pred_root: Path) -> dict[str, Any]:
    """TrackEval's HOTA, CLEAR and Identity on ``trackeval.datasets.<dataset_name>``: its results of the one tracker
    (``pred_root``), keyed by sequence (and ``COMBINED_SEQ``), then class."""
    trackeval = _trackeval()
    metric_config = {"PRINT_CONFIG": False}
    # TrackEval prints progress and tracebacks on stdout; keep stdout for the caller (``--json``).
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            dataset = getattr(trackeval.datasets, dataset_name)(dataset_config)
            metrics = [
                trackeval.metrics.HOTA(metric_config),
                trackeval.metrics.CLEAR(metric_config),
                trackeval.metrics.Identity(metric_config),
            ]
            results, _ = trackeval.Evaluator(dict(_EVAL_CONFIG)).evaluate([dataset], metrics)
        except trackeval.utils.TrackEvalException as err:
            raise DataError(pred_root, f"TrackEval rejected the input: {err}") from None
    return results[dataset_name][pred_root.name]


def _scores(result: dict[str, Any]) -> dict[str, float]:
    hota, clear, identity = result["HOTA"], result["CLEAR"], result["Identity"]
    # HOTA, AssA and DetA are curves over the 19 IoU thresholds; the reported value is their mean.
    values = {
        "HOTA": np.mean(hota["HOTA"]),
        "AssA": np.mean(hota["AssA"]),
        "DetA": np.mean(hota["DetA"]),
        "MOTA": clear["MOTA"],
        "IDF1": identity["IDF1"],
    }
    return {name: float(value) * 100 for name, value in values.items()}


def evaluate_mot(
    gt_root: str | os.PathLike[str], pred_root: str | os.PathLike[str], sequences: Sequence[str] | None = None
) -> dict[str, Any]:
    """Score tracking results against MOTChallenge ground truth with TrackEval.

    ``gt_root``: ``GT/<seq>/gt/gt.txt`` + ``GT/<seq>/seqinfo.ini``; ``pred_root``: ``PRED/<seq>.txt``;
    ``sequences``: the sequences to score (default: every folder of ``gt_root`` with ``gt/gt.txt``).
    Returns ``{"HOTA", "AssA", "DetA", "MOTA", "IDF1"}`` in percent over all sequences together, plus
    ``"per_sequence": {seq: {same keys}}``. Raises :class:`DataError` naming the file for a missing sequence,
    ``seqinfo.ini`` or prediction file, and for inputs TrackEval rejects (e.g. an id repeated within a frame).
    """
    gt_root, pred_root = Path(gt_root).resolve(), Path(pred_root).resolve()
    sequences = list(sequences) if sequences is not None else list_sequences(gt_root)
    if not sequences:
        raise DataError(gt_root, "no sequence found (expected <seq>/gt/gt.txt)")
    for seq in sequences:
        for path in (gt_root / seq / "gt" / "gt.txt", gt_root / seq / "seqinfo.ini", pred_root / f"{seq}.txt"):
            if not path.is_file():
                raise DataError(path, f"sequence '{seq}': file is missing")
    dataset_config = {
        "GT_FOLDER": str(gt_root),
        # TrackEval reads TRACKERS_FOLDER/<tracker>/<sub folder>/<seq>.txt: PRED is the tracker's folder.
        "TRACKERS_FOLDER": str(pred_root.parent),
        "TRACKERS_TO_EVAL": [pred_root.name],
        "TRACKER_SUB_FOLDER": "",
        "OUTPUT_FOLDER": None,
        "SKIP_SPLIT_FOL": True,
        "SEQ_INFO": dict.fromkeys(sequences),  # None: lengths from seqinfo.ini
        "PRINT_CONFIG": False,
    }
    per_tracker = _run_trackeval("MotChallenge2DBox", dataset_config, pred_root)
    return {
        **_scores(per_tracker[_COMBINED][_CLASS]),
        "per_sequence": {seq: _scores(per_tracker[seq][_CLASS]) for seq in sequences},
    }


BDD100K_CLASSES = ("pedestrian", "rider", "car", "bus", "truck", "train", "motorcycle", "bicycle")
"""The classes BDD100K MOT scores (TrackEval's ``BDD100K``)."""


def evaluate_bdd100k(gt_root: str | os.PathLike[str], pred_root: str | os.PathLike[str]) -> dict[str, Any]:
    """Score BDD100K MOT results (``PRED/<seq>.json``) against ground truth (``GT/<seq>.json``) with TrackEval.

    Returns ``{"mHOTA", "mMOTA", "mIDF1"}`` (class averages over :data:`BDD100K_CLASSES`), ``{"HOTA", "MOTA",
    "IDF1", "AssA", "DetA"}`` over all detections, and ``"per_class": {class: {HOTA, AssA, DetA, MOTA, IDF1}}``,
    in percent. Raises :class:`DataError` naming the folder or file for a missing sequence result or an input
    TrackEval rejects.
    """
    gt_root, pred_root = Path(gt_root).resolve(), Path(pred_root).resolve()
    if not gt_root.is_dir():
        raise DataError(gt_root, "ground-truth folder does not exist")
    sequences = sorted(p.stem for p in gt_root.glob("*.json"))
    if not sequences:
        raise DataError(gt_root, "no sequence found (expected <seq>.json)")
    for seq in sequences:
        if not (pred_root / f"{seq}.json").is_file():
            raise DataError(pred_root / f"{seq}.json", f"sequence '{seq}': file is missing")
    dataset_config = {
        "GT_FOLDER": str(gt_root),
        "TRACKERS_FOLDER": str(pred_root.parent),
        "TRACKERS_TO_EVAL": [pred_root.name],
        "TRACKER_SUB_FOLDER": "",
        "OUTPUT_FOLDER": None,
        "PRINT_CONFIG": False,
    }
    combined = _run_trackeval("BDD100K", dataset_config, pred_root)[_COMBINED]
    class_avg, det_avg = _scores(combined["cls_comb_cls_av"]), _scores(combined["cls_comb_det_av"])
    return {
        **{f"m{name}": class_avg[name] for name in ("HOTA", "MOTA", "IDF1")},
        **det_avg,
        "per_class": {cls: _scores(combined[cls]) for cls in BDD100K_CLASSES},
    }

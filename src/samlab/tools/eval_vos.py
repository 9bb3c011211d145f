"""``samlab eval vos``: J, F and J&F of predicted mask folders against ground-truth folders.

Both roots hold one folder per video, in either layout (detected per video, as the official SA-V evaluator does):

- DAVIS/MOSE: ``<video>/<frame>.png``, one palette or grey PNG per frame whose values are object ids (0 = background);
- SA-V: ``<video>/<object>/<frame>.png``, one binary PNG per object and frame.

The frames evaluated are the ground truth's; a missing prediction PNG (or video folder) counts as an empty mask and
is listed in :attr:`VOSResult.missing`. Prediction folders of videos absent from the ground truth are ignored.
Scoring follows :mod:`samlab.metrics.vos_scores` and equals the official evaluator up to float rounding.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import sys
from collections.abc import Hashable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from samlab.data.formats.base import decode_label_png, read_label_png
from samlab.errors import DataError
from samlab.metrics.vos_scores import Box, SequenceScores, boundary_radius, object_box, region_boundary_scores
from samlab.progress import track

DAVIS = "davis"
SAV = "sav"

_LABEL_MODES = ("P", "L", "I", "I;16", "1")
# Beyond this many candidate ids a histogram finds the present ones faster than one comparison per id.
_MAX_IDS_BY_COMPARISON = 32


@dataclass
class ObjectResult:
    """Scores of one object of one video, in percent; ``frames`` is how many frames were counted for it."""

    video: str
    object: str
    j: float
    f: float
    frames: int

    @property
    def jf(self) -> float:
        """(J + F) / 2."""
        return (self.j + self.f) / 2


@dataclass
class VOSResult:
    """Global and per-object scores of a folder evaluation (percent).

    ``j``/``f``/``jf`` are means over all objects of all videos; ``frames`` is the number of ground-truth PNGs
    read; ``missing`` lists the prediction files (or whole video folders, ending in ``/``) that were absent and
    scored as empty masks, relative to the prediction root.
    """

    j: float
    f: float
    jf: float
    objects: list[ObjectResult]
    frames: int
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready ``{"J", "F", "J&F", "objects": [{"video", "object", "J", "F", "J&F", "frames"}], ...}``."""
        return {
            "J": self.j,
            "F": self.f,
            "J&F": self.jf,
            "objects": [
                {"video": o.video, "object": o.object, "J": o.j, "F": o.f, "J&F": o.jf, "frames": o.frames}
                for o in self.objects
            ],
            "frames": self.frames,
            "missing": self.missing,
        }

    def table(self) -> str:
        """Human-readable table in the official evaluator's layout (one decimal)."""
        width = max([len("Global score"), *(len(o.video) for o in self.objects)])
        lines = [f"{'sequence':<{width}} {'obj':>6} {'J&F':>5} {'J':>5} {'F':>5}"]
        lines.append(f"{'Global score':<{width}} {'':>6} {self.jf:5.1f} {self.j:5.1f} {self.f:5.1f}")
        lines += [f"{o.video:<{width}} {o.object:>6} {o.jf:5.1f} {o.j:5.1f} {o.f:5.1f}" for o in self.objects]
        return "\n".join(lines)

    def write_csv(self, path: str | PathLike[str]) -> None:
        """Write ``video,object,J&F,J,F,frames`` rows, the first one being the global score (full precision)."""
        with open(path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["video", "object", "J&F", "J", "F", "frames"])
            writer.writerow(["Global score", "", self.jf, self.j, self.f, self.frames])
            for o in self.objects:
                writer.writerow([o.video, o.object, o.jf, o.j, o.f, o.frames])


def read_object_ids(path: str | PathLike[str]) -> np.ndarray:
    """``[H, W]`` object ids of a DAVIS-layout mask PNG (palette index or grey value; 0 = background).

    Raises :class:`DataError` naming the file when it is unreadable or in colour, since colours are not ids.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(path, f"cannot read mask PNG ({err.strerror})") from None
    labels = decode_label_png(data)
    if labels is not None:
        return labels
    try:
        with Image.open(path) as image:
            if image.mode not in _LABEL_MODES:
                raise DataError(
                    path, f"mask PNG is in colour (mode {image.mode}); DAVIS layout needs palette or grey PNGs of ids"
                )
            labels = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(path, f"cannot decode mask PNG ({err})") from None
    return labels.astype(np.uint8) if labels.dtype == bool else labels


def read_binary_mask(path: str | PathLike[str]) -> np.ndarray:
    """``[H, W]`` bool mask of an SA-V-layout PNG: any non-zero value is foreground."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(path, f"cannot read mask PNG ({err.strerror})") from None
    labels = decode_label_png(data)
    return (read_label_png(path) if labels is None else labels) > 0


def detect_layout(video_dir: Path) -> str:
    """``"davis"`` when a video folder holds frame PNGs, ``"sav"`` when it holds object folders.

    Raises :class:`DataError` when it holds both or neither.
    """
    entries = [entry for entry in video_dir.iterdir() if not entry.name.startswith(".")]
    has_pngs = any(entry.suffix.lower() == ".png" and entry.is_file() for entry in entries)
    has_dirs = any(entry.is_dir() for entry in entries)
    if has_pngs and has_dirs:
        raise DataError(video_dir, "mixes frame PNGs and object folders; expected <frame>.png or <object>/<frame>.png")
    if has_dirs:
        return SAV
    if has_pngs:
        return DAVIS
    raise DataError(video_dir, "holds no mask PNGs and no object folders")


def _frame_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith("."))


def _check_same_size(pred: np.ndarray, gt: np.ndarray, pred_path: Path, gt_path: Path) -> None:
    if pred.shape[:2] != gt.shape[:2]:
        raise DataError(
            pred_path,
            f"mask is {pred.shape[1]}x{pred.shape[0]} (WxH) but ground truth {gt_path} is {gt.shape[1]}x{gt.shape[0]}",
        )


def _present_objects(labels: np.ndarray) -> dict[int, tuple[np.ndarray, Box]]:
    """``{id: ([H, W] bool mask, box)}`` of the non-zero ids in a label map."""
    top = int(labels.max())
    if top == 0:
        return {}
    if top <= _MAX_IDS_BY_COMPARISON:
        candidates = range(1, top + 1)
    else:
        candidates = np.flatnonzero(np.bincount(labels.ravel()))[1:].tolist()
    objects = {}
    for obj in candidates:
        mask = labels == obj
        box = object_box(mask)
        if box is not None:
            objects[obj] = (mask, box)
    return objects


def _frame_subset(frames: list[str], skip_first_last: bool) -> list[str]:
    return frames[1:-1] if skip_first_last else frames


def _evaluate_davis_video(
    gt_dir: Path, pred_dir: Path, skip_first_last: bool
) -> tuple[dict[Hashable, tuple[float, float, int]], int, list[Path]]:
    sequence = SequenceScores()
    missing = []
    frames = _frame_subset(_frame_names(gt_dir), skip_first_last)
    for name in frames:
        gt_path, pred_path = gt_dir / name, pred_dir / name
        gt_labels = read_object_ids(gt_path)
        if pred_path.is_file():
            pred_labels = read_object_ids(pred_path)
            _check_same_size(pred_labels, gt_labels, pred_path, gt_path)
            pred_objects = _present_objects(pred_labels)
        else:
            missing.append(pred_path)
            pred_objects = {}
        gt_objects = _present_objects(gt_labels)
        radius = boundary_radius(*gt_labels.shape[:2])
        empty = np.zeros(gt_labels.shape[:2], dtype=bool)
        scores = {}
        for obj in gt_objects.keys() | pred_objects.keys():
            pred_mask, pred_box = pred_objects.get(obj, (empty, None))
            gt_mask, gt_box = gt_objects.get(obj, (empty, None))
            scores[obj] = region_boundary_scores(pred_mask, gt_mask, radius, (pred_box, gt_box))
        sequence.update(scores, gt_objects.keys())
    return sequence.results(), len(frames), missing


def _evaluate_sav_video(
    gt_dir: Path, pred_dir: Path, skip_first_last: bool
) -> tuple[dict[Hashable, tuple[float, float, int]], int, list[Path]]:
    results: dict[Hashable, tuple[float, float, int]] = {}
    missing = []
    num_frames = 0
    for object_dir in sorted(p for p in gt_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        sequence = SequenceScores()
        frames = _frame_subset(_frame_names(object_dir), skip_first_last)
        for name in frames:
            gt_path, pred_path = object_dir / name, pred_dir / object_dir.name / name
            gt_mask = read_binary_mask(gt_path)
            if pred_path.is_file():
                pred_mask = read_binary_mask(pred_path)
                _check_same_size(pred_mask, gt_mask, pred_path, gt_path)
            else:
                missing.append(pred_path)
                pred_mask = np.zeros_like(gt_mask)
            boxes = (object_box(pred_mask), object_box(gt_mask))
            scores = {} if boxes == (None, None) else {0: region_boundary_scores(pred_mask, gt_mask, None, boxes)}
            sequence.update(scores, [0] if boxes[1] is not None else [])
        num_frames += len(frames)
        # An object empty in the GT on every evaluated frame is not reported (the official evaluator fails on it).
        for j, f, count in sequence.results().values():
            results[object_dir.name] = (j, f, count)
    return results, num_frames, missing


def evaluate_video(
    gt_dir: str | PathLike[str], pred_dir: str | PathLike[str], skip_first_last: bool = False
) -> tuple[list[ObjectResult], int, list[Path]]:
    """Score one video folder: ``(per-object results, ground-truth PNGs read, missing prediction files)``.

    The layout is detected from ``gt_dir``; a prediction folder in the other layout raises :class:`DataError`.
    A missing ``pred_dir`` scores every object as empty.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    layout = detect_layout(gt_dir)
    if pred_dir.is_dir() and any(pred_dir.iterdir()) and detect_layout(pred_dir) != layout:
        raise DataError(pred_dir, f"prediction is in {detect_layout(pred_dir)} layout but ground truth is in {layout}")
    evaluate = _evaluate_davis_video if layout == DAVIS else _evaluate_sav_video
    scores, num_frames, missing = evaluate(gt_dir, pred_dir, skip_first_last)
    objects = [
        ObjectResult(gt_dir.name, str(obj), 100 * j, 100 * f, count) for obj, (j, f, count) in sorted(scores.items())
    ]
    if not pred_dir.is_dir():
        missing = [pred_dir]
    return objects, num_frames, missing


def _init_worker() -> None:
    cv2.setNumThreads(1)


def _evaluate_video_args(args: tuple[Path, Path, bool]) -> tuple[list[ObjectResult], int, list[Path]]:
    return evaluate_video(*args)


def evaluate_vos_folders(
    gt: str | PathLike[str],
    pred: str | PathLike[str],
    skip_first_last: bool = False,
    workers: int = 1,
    progress: bool = False,
) -> VOSResult:
    """Evaluate every ground-truth video under ``gt`` against ``pred`` (same video folder names).

    ``skip_first_last`` drops each sequence's first and last annotated frames (the official SA-V evaluator's
    default and DAVIS's semi-supervised protocol); ``workers > 1`` scores videos in a process pool; ``progress``
    shows a progress bar (videos) on standard error.
    Raises :class:`DataError` for a missing root, a ground truth without videos, a prediction root that shares
    no video with it, mismatched layouts or sizes, and unreadable PNGs.
    """
    gt_root, pred_root = Path(gt), Path(pred)
    for root, what in ((gt_root, "ground-truth"), (pred_root, "prediction")):
        if not root.is_dir():
            raise DataError(root, f"{what} folder does not exist")
    videos = sorted(p.name for p in gt_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not videos:
        raise DataError(gt_root, "holds no video folders")
    if not any((pred_root / video).is_dir() for video in videos):
        raise DataError(pred_root, f"holds none of the {len(videos)} ground-truth video folders (e.g. {videos[0]!r})")
    tasks = [(gt_root / video, pred_root / video, skip_first_last) for video in videos]
    if workers > 1:
        # forkserver: forking a process whose torch/OpenCV thread pools are running can deadlock the children.
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, mp_context=context) as pool:
            per_video = list(
                track(pool.map(_evaluate_video_args, tasks), "eval vos", len(tasks), "video", enabled=progress)
            )
    else:
        per_video = [_evaluate_video_args(task) for task in track(tasks, "eval vos", unit="video", enabled=progress)]
    objects = [obj for video_objects, _, _ in per_video for obj in video_objects]
    missing = [
        f"{path.relative_to(pred_root).as_posix()}{'/' if path.parent == pred_root else ''}"
        for _, _, video_missing in per_video
        for path in video_missing
    ]
    j = float(np.mean([o.j for o in objects])) if objects else float("nan")
    f = float(np.mean([o.f for o in objects])) if objects else float("nan")
    return VOSResult(j, f, (j + f) / 2, objects, sum(n for _, n, _ in per_video), missing)


def run_eval_vos(
    gt: str | PathLike[str],
    pred: str | PathLike[str],
    skip_first_last: bool = False,
    as_json: bool = False,
    csv: str | PathLike[str] | None = None,
    workers: int = 1,
) -> int:
    """CLI body of ``samlab eval vos``: evaluate, print a table (or JSON), optionally write a CSV.

    Returns the exit code: 0 on success, 2 when the input is bad (the :class:`DataError` goes to stderr).
    Missing prediction files are reported on stderr.
    """
    try:
        result = evaluate_vos_folders(gt, pred, skip_first_last=skip_first_last, workers=workers, progress=True)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result.missing:
        shown = ", ".join(result.missing[:5]) + (" ..." if len(result.missing) > 5 else "")
        print(f"warning: {len(result.missing)} missing predictions scored as empty masks: {shown}", file=sys.stderr)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.table())
        print(f"\nGlobal score: J&F: {result.jf:.1f} J: {result.j:.1f} F: {result.f:.1f}")
    if csv is not None:
        result.write_csv(csv)
    return 0

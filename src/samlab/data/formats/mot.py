"""Detections and tracks in the MOTChallenge layout, and detections from Python detectors.

Detections come from a file (MOTChallenge ``det.txt`` or a simple JSON, see :func:`read_detections`) or from a
detector's output in Python (:func:`detections_from_torchvision`, :func:`detections_from_ultralytics`); every source
gives :class:`FrameDetections`. Tracking results are written as MOTChallenge lines (:func:`write_mot_results`) next
to a ``seqinfo.ini`` (:func:`write_seqinfo`), the layout TrackEval reads. Frames are numbered from 1, as in
MOTChallenge. No torch in this module: converters duck-type tensors through ``.detach().cpu().numpy()``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from samlab.errors import DataError
from samlab.masks import decode_rle

PathLike = str | os.PathLike[str]

# Masks given as probabilities (Mask R-CNN, YOLO-seg) are foreground above this value.
_MASK_THRESHOLD = 0.5


@dataclass
class FrameDetections:
    """The detections of one frame.

    Attributes:
        boxes: ``[N, 4]`` float32 ``x1 y1 x2 y2`` in pixels.
        scores: ``[N]`` float32 confidences.
        labels: ``[N]`` int64 class ids (0 when the source has none).
        masks: ``[N, H, W]`` bool instance masks, or None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> FrameDetections:
        """No detection: ``[0, 4]`` boxes, ``[0]`` scores and labels, no masks."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def read_detections(path: PathLike, num_frames: int | None = None) -> dict[int, FrameDetections]:
    """Read per-frame detections from a MOTChallenge ``det.txt`` or a simple JSON file.

    ``det.txt`` (any suffix but ``.json``): one detection per line, ``frame,id,x,y,w,h,score[,...]`` (commas or
    spaces; frames 1-based; ``score`` defaults to 1 when the line has only six fields; labels are 0).
    JSON: ``{"frames": [{"frame": 1, "boxes": [[x1, y1, x2, y2], ...], "scores": [...], "labels": [...],
    "masks": [RLE, ...]}, ...]}`` where ``scores`` (default 1), ``labels`` (default 0) and ``masks`` (COCO RLEs)
    are optional.

    Returns ``{frame: FrameDetections}`` keyed by 1-based frame number; when ``num_frames`` is given every frame
    ``1..num_frames`` has an entry (empty for frames without detections), otherwise only frames with detections.
    Raises :class:`DataError` naming the file and the line for a negative box size, a non-finite number or score,
    a frame number below 1 or above ``num_frames``, a malformed line or entry.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "detections file is missing") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot read detections ({err})") from None
    frames = _read_json(path, text, num_frames) if path.suffix.lower() == ".json" else _read_txt(path, text, num_frames)
    if num_frames is not None:
        for frame in range(1, num_frames + 1):
            frames.setdefault(frame, FrameDetections.empty())
    return dict(sorted(frames.items()))


def _check_frame(path: Path, where: str, frame: Any, num_frames: int | None) -> int:
    if isinstance(frame, bool) or not isinstance(frame, (int, float)) or not float(frame).is_integer():
        raise DataError(path, f"{where}: frame number {frame!r} is not an integer")
    frame = int(frame)
    if frame < 1:
        raise DataError(path, f"{where}: frame {frame} is out of range (frames are numbered from 1)")
    if num_frames is not None and frame > num_frames:
        raise DataError(path, f"{where}: frame {frame} is out of range (the sequence has {num_frames} frames)")
    return frame


def _check_box(path: Path, where: str, box: np.ndarray, score: float) -> None:
    if not np.isfinite(box).all():
        raise DataError(path, f"{where}: box {box.tolist()} has a non-finite coordinate")
    if not math.isfinite(score):
        raise DataError(path, f"{where}: score {score} is not a finite number")
    width, height = box[2] - box[0], box[3] - box[1]
    if width < 0 or height < 0:
        raise DataError(path, f"{where}: negative box size (width {width:g}, height {height:g})")


def _read_txt(path: Path, text: str, num_frames: int | None) -> dict[int, FrameDetections]:
    rows: dict[int, list[tuple[np.ndarray, float]]] = {}
    for line_number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {line_number}"
        fields = [f for f in re.split(r"[,\s]+", line) if f]
        if len(fields) < 6:
            raise DataError(path, f"{where}: expected 'frame,id,x,y,w,h,score', got {line!r}")
        try:
            values = [float(f) for f in fields[: min(len(fields), 7)]]
        except ValueError:
            raise DataError(path, f"{where}: non-numeric field in {line!r}") from None
        frame = _check_frame(path, where, values[0], num_frames)
        x, y, w, h = values[2:6]
        score = values[6] if len(values) > 6 else 1.0
        box = np.array([x, y, x + w, y + h])
        _check_box(path, where, box, score)
        rows.setdefault(frame, []).append((box, score))
    return {
        frame: FrameDetections(
            np.stack([b for b, _ in items]).astype(np.float32),
            np.array([s for _, s in items], dtype=np.float32),
            np.zeros(len(items), dtype=np.int64),
        )
        for frame, items in rows.items()
    }


def _entry_lines(text: str) -> list[int] | None:
    """Line numbers where the entries of the top-level ``"frames"`` array start, or None if it cannot be located."""
    match = re.search(r'"frames"\s*:\s*\[', text)
    if match is None:
        return None
    decoder = json.JSONDecoder()
    lines = []
    position = match.end()
    whitespace = re.compile(r"[\s,]*")
    while True:
        position = whitespace.match(text, position).end()
        if position >= len(text) or text[position] == "]":
            return lines
        lines.append(text.count("\n", 0, position) + 1)
        try:
            _, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return None


def _read_json(path: Path, text: str, num_frames: int | None) -> dict[int, FrameDetections]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(path, f"corrupt JSON at line {err.lineno} ({err.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("frames"), list):
        raise DataError(path, "detections JSON needs a 'frames' list")
    entries = record["frames"]
    lines = _entry_lines(text)
    if lines is None or len(lines) != len(entries):
        lines = None
    frames: dict[int, FrameDetections] = {}
    for i, entry in enumerate(entries):
        where = f"frames[{i}]" + (f" (line {lines[i]})" if lines else "")
        if not isinstance(entry, dict) or "frame" not in entry:
            raise DataError(path, f"{where}: expected an object with 'frame' and 'boxes'")
        frame = _check_frame(path, where, entry["frame"], num_frames)
        if frame in frames:
            raise DataError(path, f"{where}: frame {frame} is listed twice")
        frames[frame] = _json_entry(path, f"{where}, frame {frame}", entry)
    return frames


def _json_entry(path: Path, where: str, entry: dict[str, Any]) -> FrameDetections:
    try:
        boxes = np.asarray(entry.get("boxes", []), dtype=np.float64).reshape(-1, 4)
        count = len(boxes)
        scores = np.asarray(entry.get("scores", [1.0] * count), dtype=np.float64).reshape(-1)
        labels = np.asarray(entry.get("labels", [0] * count), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(path, f"{where}: 'boxes' must be [[x1, y1, x2, y2], ...], 'scores'/'labels' numbers") from None
    if len(scores) != count or len(labels) != count:
        raise DataError(path, f"{where}: {count} boxes but {len(scores)} scores and {len(labels)} labels")
    for k in range(count):
        _check_box(path, f"{where}, box {k}", boxes[k], float(scores[k]))
    if not (np.isfinite(labels) & (labels == np.round(labels))).all():
        raise DataError(path, f"{where}: labels must be integers")
    masks = None
    if entry.get("masks") is not None:
        rles = entry["masks"]
        if not isinstance(rles, list) or len(rles) != count:
            raise DataError(path, f"{where}: 'masks' must be a list of {count} RLEs")
        try:
            decoded = [decode_rle(rle) for rle in rles]
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(path, f"{where}: invalid mask RLE ({err})") from None
        if len({m.shape for m in decoded}) > 1:
            raise DataError(path, f"{where}: masks have different sizes")
        masks = np.stack(decoded) if decoded else None
    return FrameDetections(boxes.astype(np.float32), scores.astype(np.float32), labels.astype(np.int64), masks)


def _numpy(value: Any) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def detections_from_torchvision(output: dict[str, Any]) -> FrameDetections:
    """Convert one image's output of a torchvision detector (Faster/Mask R-CNN, RetinaNet, FCOS, ...).

    ``output``: ``{"boxes": [N, 4] xyxy, "scores": [N], "labels": [N][, "masks": [N, 1, H, W] or [N, H, W]]}`` as
    tensors or arrays; masks given as probabilities are thresholded at 0.5.
    """
    boxes = _numpy(output["boxes"]).astype(np.float32).reshape(-1, 4)
    masks = None
    if output.get("masks") is not None:
        raw = _numpy(output["masks"])
        raw = raw.reshape(len(boxes), *raw.shape[-2:])
        masks = raw if raw.dtype == bool else raw > _MASK_THRESHOLD
    return FrameDetections(
        boxes,
        _numpy(output["scores"]).astype(np.float32).reshape(-1),
        _numpy(output["labels"]).astype(np.int64).reshape(-1),
        masks,
    )


def _unletterbox(masks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Masks ``[N, h, w]`` at a detector's letterboxed input size back to the image's ``(H, W)``.

    Ultralytics resizes the image keeping its aspect ratio and pads it evenly on both sides; this crops the padding
    and resizes to the image.
    """
    height, width = image_size
    in_h, in_w = masks.shape[1:]
    gain = min(in_h / height, in_w / width)
    pad_y, pad_x = (in_h - height * gain) / 2, (in_w - width * gain) / 2
    top, left = round(pad_y - 0.1), round(pad_x - 0.1)
    bottom, right = round(in_h - pad_y + 0.1), round(in_w - pad_x + 0.1)
    cropped = masks[:, top:bottom, left:right].astype(np.uint8)
    return np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_NEAREST) for m in cropped]).astype(bool)


def detections_from_ultralytics(result: Any) -> FrameDetections:
    """Convert one ``ultralytics`` ``Results`` object (YOLO detection or segmentation) for one image.

    Reads ``result.boxes.xyxy`` ``[N, 4]``, ``.conf`` ``[N]``, ``.cls`` ``[N]`` and, when present,
    ``result.masks.data`` ``[N, h, w]``; masks at the letterboxed inference size are mapped back to
    ``result.orig_shape`` ``(H, W)``.
    """
    boxes = result.boxes
    masks = None
    if getattr(result, "masks", None) is not None and len(boxes.xyxy):
        masks = _numpy(result.masks.data) > _MASK_THRESHOLD
        image_size = tuple(int(v) for v in result.orig_shape[:2])
        if masks.shape[1:] != image_size:
            masks = _unletterbox(masks, image_size)
    return FrameDetections(
        _numpy(boxes.xyxy).astype(np.float32).reshape(-1, 4),
        _numpy(boxes.conf).astype(np.float32).reshape(-1),
        _numpy(boxes.cls).astype(np.int64).reshape(-1),
        masks,
    )


def write_mot_results(path: PathLike, rows: Iterable[Sequence[Any]]) -> None:
    """Write tracks as MOTChallenge results, one line ``frame,id,x,y,w,h,score,-1,-1,-1`` per row.

    ``rows``: ``(frame (1-based), track id, box x1 y1 x2 y2 in pixels, score, ...)`` in the order to write (fields
    after the fourth, such as a label or mask, are not written); streamed, so a generator works. The parent folder
    is created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for frame, track_id, box, score, *_ in rows:
            x1, y1, x2, y2 = (float(v) for v in box)
            box_text = f"{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f}"
            f.write(f"{int(frame)},{int(track_id)},{box_text},{float(score):.4f},-1,-1,-1\n")


def write_seqinfo(
    seq_dir: PathLike,
    name: str,
    num_frames: int,
    width: int,
    height: int,
    frame_rate: int = 30,
    im_dir: str = "img1",
    im_ext: str = ".jpg",
) -> None:
    """Write ``seq_dir/seqinfo.ini``, the MOTChallenge sequence description (creates ``seq_dir``)."""
    seq_dir = Path(seq_dir)
    seq_dir.mkdir(parents=True, exist_ok=True)
    (seq_dir / "seqinfo.ini").write_text(
        "[Sequence]\n"
        f"name={name}\n"
        f"imDir={im_dir}\n"
        f"frameRate={frame_rate}\n"
        f"seqLength={num_frames}\n"
        f"imWidth={width}\n"
        f"imHeight={height}\n"
        f"imExt={im_ext}\n",
        encoding="utf-8",
    )

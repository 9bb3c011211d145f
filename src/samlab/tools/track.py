"""``samlab track``: track the boxes of any detector through a video with a MASA model; MOTChallenge and TAO results.

Frames are the sorted images of a folder (frame numbers from 1, as MOTChallenge); detections come from a
MOTChallenge ``det.txt`` or the simple JSON of :func:`samlab.data.formats.mot.read_detections`, or from a detector
run on each frame (:mod:`samlab.tools.detectors`: torchvision, Ultralytics YOLO, or the MASA model's own head).
Each frame is resized to fit the model's square input (padded with the grey of the training views), its boxes are
embedded and associated by the module's tracker (:func:`samlab.models.masa.tracker.build_tracker`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
import yaml

from samlab.data.formats.base import IMAGE_SUFFIXES, read_image
from samlab.data.formats.mot import FrameDetections, read_detections, write_mot_results
from samlab.data.formats.tao import write_tao_results
from samlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_images
from samlab.errors import DataError
from samlab.masks import encode_rle
from samlab.models.masa.module import MASAModule
from samlab.models.masa.tracker import Tracker, build_tracker
from samlab.progress import track
from samlab.tools.detectors import Detector, MASAHeadDetector, load_detector

_PAD_VALUE = 114  # the grey around the training views (samlab.data.pairs)

DetectionSource = dict[int, FrameDetections] | Detector | MASAHeadDetector
"""Per-frame detections (keys: frame numbers from 1), a detector of RGB frames, or the MASA model's own head."""


class TrackedBox(NamedTuple):
    """One tracked detection: ``frame`` (from 1), ``track_id`` (from 1), ``box`` x1 y1 x2 y2 in frame pixels,
    ``score``, ``label`` and its ``[H, W]`` bool ``mask`` when the detections have masks."""

    frame: int
    track_id: int
    box: list[float]
    score: float
    label: int
    mask: np.ndarray | None = None


def list_frames(frames_dir: str | os.PathLike[str]) -> list[Path]:
    """The image files (``.jpg``, ``.jpeg``, ``.png``) of ``frames_dir`` sorted by name: frame 1, 2, …"""
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir():
        raise DataError(frames_dir, "frames folder does not exist")
    frames = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not frames:
        raise DataError(frames_dir, f"no image file ({', '.join(IMAGE_SUFFIXES)}) in the frames folder")
    return frames


def load_module(config: str | os.PathLike[str] | None, checkpoint: str | os.PathLike[str] | None = None) -> MASAModule:
    """The :class:`MASAModule` of a samlab config's ``model:`` block (``class_path`` / ``init_args``), in eval mode.

    Without ``config``, ``checkpoint`` is a standalone tracker checkpoint (``samlab export --format masa``).

    ``image_size`` comes from the model block or, as in training configs, from ``data.init_args.image_size``.
    ``checkpoint``: a Lightning checkpoint of that module (``samlab fit`` output) whose weights are loaded.
    """
    if config is None:
        if checkpoint is None:
            raise ValueError("samlab track needs a config or a standalone tracker checkpoint (samlab export)")
        from samlab.export import load_module_export

        return load_module_export(checkpoint, MASAModule)
    config = Path(config)
    try:
        settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(config, "config file is missing") from None
    except yaml.YAMLError as err:
        raise DataError(config, f"not valid YAML ({err})") from None
    block = (settings or {}).get("model")
    if not isinstance(block, dict) or "class_path" not in block:
        raise DataError(config, "no 'model:' block with a class_path")
    module_name, _, class_name = block["class_path"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise DataError(config, f"model class_path '{block['class_path']}' cannot be imported") from None
    if not (isinstance(cls, type) and issubclass(cls, MASAModule)):
        raise DataError(config, f"model class_path '{block['class_path']}' is not a MASAModule")
    kwargs: dict[str, Any] = dict(block.get("init_args") or {})
    data_size = ((settings.get("data") or {}).get("init_args") or {}).get("image_size")
    if "image_size" not in kwargs and data_size is not None:
        kwargs["image_size"] = data_size
    module = cls(**kwargs)
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise DataError(checkpoint, "checkpoint file is missing")
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        try:
            module.load_state_dict(state.get("state_dict", state))
        except RuntimeError as err:
            raise DataError(checkpoint, f"checkpoint does not fit the model of {config}: {err}") from None
    return module.eval()


def prepare_frame(image: np.ndarray, size: int) -> tuple[torch.Tensor, float]:
    """``image`` ``[H, W, 3]`` uint8 → ``[1, 3, size, size]`` normalised float32 (resized to fit, padded right and
    bottom with grey) and the scale factor from image to model pixels."""
    scale = size / max(image.shape[:2])
    height, width = round(image.shape[0] * scale), round(image.shape[1] * scale)
    canvas = np.full((size, size, 3), _PAD_VALUE, dtype=np.uint8)
    canvas[:height, :width] = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    tensor = torch.from_numpy(canvas).permute(2, 0, 1)[None].contiguous()
    return normalize_images(tensor, IMAGENET_MEAN, IMAGENET_STD), scale


@torch.no_grad()
def track_frames(
    module: MASAModule,
    frames: list[Path],
    detections: DetectionSource,
    tracker: Tracker | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Iterator[TrackedBox]:
    """Track the detections of ``frames`` with ``module``'s embeddings, frame by frame.

    ``detections``: a :data:`DetectionSource`. Yields :class:`TrackedBox` rows (MOTChallenge rows are their first
    four fields). ``tracker``: default :meth:`MASAModule.make_tracker` (the config's tracker settings). The module
    runs in eval mode and gets its mode back at the end.
    """
    tracker = tracker or module.make_tracker()
    tracker.reset()
    was_training = module.training
    module.to(device).eval()
    try:
        yield from _track(module, frames, detections, tracker, device, progress)
    finally:
        module.train(was_training)


def _head_detections(
    module: MASAModule, features: Any, scale: float, image_shape: tuple[int, ...], score_thr: float | None
) -> FrameDetections:
    """The MASA head's boxes of one frame, in frame pixels (clipped; boxes left without area are dropped)."""
    size = module.image_size
    (found,) = module.model.detect(features, (size, size))
    boxes = (found["boxes"].float().cpu() / scale).numpy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, image_shape[1])
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, image_shape[0])
    scores = found["scores"].float().cpu().numpy()
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if score_thr is not None:
        keep &= scores >= score_thr
    return FrameDetections(boxes[keep], scores[keep], np.zeros(int(keep.sum()), np.int64))


def _track(
    module: MASAModule,
    frames: list[Path],
    source: DetectionSource,
    tracker: Tracker,
    device: str | torch.device,
    progress: bool,
) -> Iterator[TrackedBox]:
    size = module.image_size
    for number, path in enumerate(track(frames, "tracking", unit="frame", enabled=progress), start=1):
        features = scale = None
        if isinstance(source, dict):
            found = source.get(number) or FrameDetections.empty()
            if len(found) == 0:
                continue  # nothing to embed; the tracker leaves its memory as it is on an empty frame
            image = read_image(path)
        else:
            image = read_image(path)
            if isinstance(source, MASAHeadDetector):
                tensor, scale = prepare_frame(image, size)
                features = module.model.features(tensor.to(device))
                found = _head_detections(module, features, scale, image.shape, source.score_thr)
            else:
                found = source(image)
            if len(found) == 0:
                continue
        if features is None:
            tensor, scale = prepare_frame(image, size)
            features = module.model.features(tensor.to(device))
        boxes = torch.from_numpy(np.asarray(found.boxes, dtype=np.float32))
        embeds = module.model.embed(features, [(boxes * scale).to(device)], (size, size))
        result = tracker.step(
            number, boxes, torch.from_numpy(found.scores), torch.from_numpy(found.labels.astype(np.int64)), embeds
        )
        for index, track_id, box, score, label in zip(
            result.indices.tolist(),
            result.ids.tolist(),
            result.boxes.tolist(),
            result.scores.tolist(),
            result.labels.tolist(),
        ):
            mask = found.masks[index] if found.masks is not None else None
            yield TrackedBox(number, int(track_id), box, float(score), int(label), mask)


def tao_results(rows: list[TrackedBox], frames: list[Path], video_id: int = 1) -> list[dict[str, Any]]:
    """TAO / COCO-style result dicts of tracked rows: ``image_id`` (the frame number), ``video_id``,
    ``file_name`` (the frame's file name), ``category_id`` (the label), ``bbox`` [x, y, w, h], ``score``,
    ``track_id``, and ``segmentation`` (COCO RLE) for rows with a mask."""
    results = []
    for row in rows:
        x1, y1, x2, y2 = row.box
        entry: dict[str, Any] = {
            "image_id": row.frame,
            "video_id": video_id,
            "file_name": frames[row.frame - 1].name,
            "category_id": row.label,
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": row.score,
            "track_id": row.track_id,
        }
        if row.mask is not None:
            entry["segmentation"] = encode_rle(row.mask)
        results.append(entry)
    return results


def run_track(
    config: str | os.PathLike[str] | None,
    frames_dir: str | os.PathLike[str],
    detections_file: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    progress: bool = True,
    detector: str | None = None,
    detector_checkpoint: str | os.PathLike[str] | None = None,
    detector_score_thr: float | None = None,
    tracker: dict[str, Any] | None = None,
    out_json: str | os.PathLike[str] | None = None,
) -> dict[str, int]:
    """``samlab track``: read frames and detections (a file, or a ``detector`` spec of
    :func:`~samlab.tools.detectors.load_detector`), track, write MOTChallenge results to ``out`` and, when
    ``out_json`` is given, TAO-style results (:func:`tao_results`) there.

    ``tracker``: settings for :func:`~samlab.models.masa.tracker.build_tracker` updating the config's (a
    ``preset`` replaces them). Returns ``{"frames", "tracked", "tracks"}`` counts, and ``"detections"`` (those of
    the file) when they come from a file.
    Detections of frames beyond the folder's frames raise :class:`DataError` naming the detections file and line;
    a bad detector spec or tracker settings raise ``ValueError``.
    """
    if (detections_file is None) == (detector is None):
        raise ValueError("give either a detections file or a detector")
    frames = list_frames(frames_dir)
    module = load_module(config, checkpoint)
    source: DetectionSource
    if detector is None:
        source = read_detections(detections_file, num_frames=len(frames))
    else:
        source = load_detector(detector, detector_checkpoint, device, detector_score_thr)
    settings = dict(module.tracker_settings)
    if tracker:
        settings = dict(tracker) if "preset" in tracker else {**settings, **tracker}
    try:
        built = build_tracker(settings)
    except TypeError as err:
        raise ValueError(f"tracker settings {settings}: {err}") from None
    rows = list(track_frames(module, frames, source, built, device=device, progress=progress))
    write_mot_results(out, rows)
    if out_json is not None:
        write_tao_results(out_json, tao_results(rows, frames))
    counts = {"frames": len(frames), "tracked": len(rows), "tracks": len({row.track_id for row in rows})}
    if isinstance(source, dict):
        counts["detections"] = sum(len(d) for d in source.values())
    return counts

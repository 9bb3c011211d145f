"""``samlab track``: track the boxes of any detector through a video with a MASA model; MOTChallenge results.

Frames are the sorted images of a folder (frame numbers from 1, as MOTChallenge); detections come from a
MOTChallenge ``det.txt`` or the simple JSON of :func:`samlab.data.formats.mot.read_detections`. Each frame is
resized to fit the model's square input (padded with the grey of the training views), its boxes are embedded and
associated by :class:`~samlab.models.masa.tracker.MASATracker`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml

from samlab.data.formats.base import IMAGE_SUFFIXES, read_image
from samlab.data.formats.mot import FrameDetections, read_detections, write_mot_results
from samlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_images
from samlab.errors import DataError
from samlab.models.masa.module import MASAModule
from samlab.models.masa.tracker import MASATracker
from samlab.progress import track

_PAD_VALUE = 114  # the grey around the training views (samlab.data.pairs)

Row = tuple[int, int, list[float], float]


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
    detections: dict[int, FrameDetections],
    tracker: MASATracker | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Iterator[Row]:
    """Track ``detections`` (keys: frame numbers from 1) through ``frames`` with ``module``'s embeddings.

    Yields MOTChallenge rows ``(frame, track id, [x1, y1, x2, y2] in image pixels, score)``, frame by frame.
    ``tracker``: default :meth:`MASAModule.make_tracker` (the config's tracker settings). The module runs in eval
    mode and gets its mode back at the end.
    """
    tracker = tracker or module.make_tracker()
    tracker.reset()
    was_training = module.training
    module.to(device).eval()
    try:
        yield from _track(module, frames, detections, tracker, device, progress)
    finally:
        module.train(was_training)


def _track(
    module: MASAModule,
    frames: list[Path],
    detections: dict[int, FrameDetections],
    tracker: MASATracker,
    device: str | torch.device,
    progress: bool,
) -> Iterator[Row]:
    size = module.image_size
    for number, path in enumerate(track(frames, "tracking", unit="frame", enabled=progress), start=1):
        found = detections.get(number)
        if found is None or len(found) == 0:
            tracker.step(
                number,
                torch.zeros((0, 4)),
                torch.zeros(0),
                torch.zeros(0, dtype=torch.long),
                torch.zeros((0, module.model.embed_channels)),
            )
            continue
        image, scale = prepare_frame(read_image(path), size)
        boxes = torch.from_numpy(np.asarray(found.boxes, dtype=np.float32))
        features = module.model.features(image.to(device))
        embeds = module.model.embed(features, [(boxes * scale).to(device)], (size, size))
        result = tracker.step(
            number, boxes, torch.from_numpy(found.scores), torch.from_numpy(found.labels.astype(np.int64)), embeds
        )
        for track_id, box, score in zip(result.ids.tolist(), result.boxes.tolist(), result.scores.tolist()):
            yield number, int(track_id), box, float(score)


def run_track(
    config: str | os.PathLike[str] | None,
    frames_dir: str | os.PathLike[str],
    detections_file: str | os.PathLike[str],
    out: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, int]:
    """``samlab track``: read frames and detections, track, write MOTChallenge results to ``out``.

    Returns ``{"frames", "detections", "tracked", "tracks"}`` counts. Detections of frames beyond the folder's
    frames raise :class:`DataError` naming the detections file and line.
    """
    frames = list_frames(frames_dir)
    detections = read_detections(detections_file, num_frames=len(frames))
    module = load_module(config, checkpoint)
    rows = list(track_frames(module, frames, detections, device=device, progress=progress))
    write_mot_results(out, rows)
    return {
        "frames": len(frames),
        "detections": sum(len(d) for d in detections.values()),
        "tracked": len(rows),
        "tracks": len({row[1] for row in rows}),
    }

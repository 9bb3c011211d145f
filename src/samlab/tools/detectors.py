"""Detectors for ``samlab track``: boxes (and masks) per frame from a model instead of a detections file.

``--detector`` specs (:func:`load_detector`):

- ``torchvision:NAME``: a ``torchvision.models.detection`` model (``fasterrcnn_resnet50_fpn_v2``,
  ``maskrcnn_resnet50_fpn``, ``retinanet_resnet50_fpn``, ...) built without downloaded weights and loaded from a
  local ``--detector-checkpoint`` (a state dict, or a dict holding one under ``state_dict`` or ``model``). The number
  of classes of an R-CNN is read from the checkpoint; other models have torchvision's 91 COCO classes.
- ``ultralytics:PATH.pt``: an Ultralytics YOLO model file (detection or segmentation; ``pip install
  'samlab[ultralytics]'``).
- ``masa``: the MASA model's own RPN and RoI heads (MASA's "unified" mode: a trained samlab MASA checkpoint
  detects and tracks alone); :class:`MASAHeadDetector` marks it, ``samlab.tools.track`` runs it on the features
  it also embeds from.

A detector takes one RGB frame ``[H, W, 3]`` uint8 and returns its :class:`FrameDetections` in frame pixels.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samlab.data.formats.mot import FrameDetections, detections_from_torchvision, detections_from_ultralytics
from samlab.errors import DataError

Detector = Callable[[np.ndarray], FrameDetections]

_RCNN_CLASSES_KEY = "roi_heads.box_predictor.cls_score.weight"


@dataclass(frozen=True)
class MASAHeadDetector:
    """The MASA module's own detection head (``MASAModel.detect``): class-agnostic boxes, label 0; boxes scoring
    below ``score_thr`` (when given) are dropped."""

    score_thr: float | None = None


def _state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    if not checkpoint.is_file():
        raise DataError(checkpoint, "detector checkpoint file is missing")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise DataError(checkpoint, f"cannot read the detector checkpoint ({err})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise DataError(checkpoint, "detector checkpoint holds no state dict")
    return state


class TorchvisionDetector:
    """A ``torchvision.models.detection`` model ``name`` with the weights of a local ``checkpoint``, in eval mode.

    ``score_thr``: the model's own minimum score (torchvision's default: 0.05 for R-CNNs, RetinaNet and FCOS).
    """

    def __init__(
        self,
        name: str,
        checkpoint: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        score_thr: float | None = None,
    ) -> None:
        from torchvision.models import detection, get_model, list_models

        known = list_models(module=detection)
        if name not in known:
            raise ValueError(f"unknown torchvision detector {name!r}; known: {', '.join(known)}")
        checkpoint = Path(checkpoint)
        state = _state_dict(checkpoint)
        kwargs: dict[str, Any] = {}
        if _RCNN_CLASSES_KEY in state:
            kwargs["num_classes"] = int(state[_RCNN_CLASSES_KEY].shape[0])
        if score_thr is not None:
            kwargs["box_score_thresh" if _RCNN_CLASSES_KEY in state else "score_thresh"] = score_thr
        model = get_model(name, weights=None, weights_backbone=None, **kwargs)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise DataError(checkpoint, f"checkpoint does not fit torchvision's {name}: {err}") from None
        self.model = model.to(device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> FrameDetections:
        tensor = torch.from_numpy(image).permute(2, 0, 1).float().div(255).to(self.device)
        return detections_from_torchvision(self.model([tensor])[0])


class UltralyticsDetector:
    """An Ultralytics YOLO model file (``.pt``), run at its defaults (NMS 0.7) with minimum confidence ``score_thr``
    (Ultralytics' default: 0.25)."""

    def __init__(
        self, path: str | os.PathLike[str], device: str | torch.device = "cpu", score_thr: float | None = None
    ) -> None:
        try:
            from ultralytics import YOLO
        except ImportError as err:
            raise ImportError(
                "--detector ultralytics:... needs Ultralytics: pip install 'samlab[ultralytics]'"
            ) from err
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "Ultralytics model file is missing")
        self.model = YOLO(str(path))
        self.options: dict[str, Any] = {"device": str(device), "verbose": False}
        if score_thr is not None:
            self.options["conf"] = score_thr

    def __call__(self, image: np.ndarray) -> FrameDetections:
        # Ultralytics takes numpy images as OpenCV does: BGR.
        (result,) = self.model.predict(np.ascontiguousarray(image[..., ::-1]), **self.options)
        return detections_from_ultralytics(result)


def load_detector(
    spec: str,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    score_thr: float | None = None,
) -> Detector | MASAHeadDetector:
    """The detector of a ``--detector`` spec: ``torchvision:NAME`` (needs ``checkpoint``), ``ultralytics:PATH``
    or ``masa``; ``score_thr``: its minimum score (default: the detector's own). Raises ``ValueError`` for
    another spec or a checkpoint given to a detector that takes none."""
    kind, _, rest = spec.partition(":")
    if checkpoint is not None and kind != "torchvision":
        raise ValueError("--detector-checkpoint is for torchvision detectors (masa uses --checkpoint)")
    if kind == "masa" and not rest:
        return MASAHeadDetector(score_thr)
    if kind == "torchvision" and rest:
        if checkpoint is None:
            raise ValueError("--detector torchvision:NAME needs --detector-checkpoint (weights only from local files)")
        return TorchvisionDetector(rest, checkpoint, device, score_thr)
    if kind == "ultralytics" and rest:
        return UltralyticsDetector(rest, device, score_thr)
    raise ValueError(f"unknown detector {spec!r}: use torchvision:NAME, ultralytics:PATH.pt or masa")

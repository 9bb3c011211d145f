"""``samlab data segment-everything``: SAM's automatic mask generator over raw images, written in the SA-1B layout.

For each image ``<stem>.<ext>`` the output folder receives ``<stem>.json``::

    {"image": {"image_id", "width", "height", "file_name"},
     "annotations": [{"id", "segmentation" (COCO RLE, str counts), "area", "bbox" (x, y, w, h), "predicted_iou",
                      "stability_score", "point_coords", "crop_box"}, ...]}

and the image itself (a hard link, or a copy), so the folder is an SA-1B folder: :class:`SA1BReader` reads it and
``samlab data sa1b-to-coco`` converts it for MASA. Image ids are the images' 1-based positions in the sorted input
list and annotation ids are ``image_id * 100000 + k``, unique over the folder when one run covers the image set.
Images whose JSON exists are skipped, and JSONs are written atomically, so an interrupted run resumes.

The generator is ``segment_anything``'s ``SamAutomaticMaskGenerator`` or ``sam2``'s ``SAM2AutomaticMaskGenerator``;
their prompt points are decoded ``points_per_batch`` at a time (raise it on a large GPU), one image at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from samlab.data.formats.base import IMAGE_SUFFIXES, read_image
from samlab.errors import DataError
from samlab.progress import track
from samlab.tools.mot_from_masks import link_or_copy

PathLike = str | os.PathLike[str]
Backend = Literal["segment_anything", "sam2"]

ANNOTATION_ID_STRIDE = 100_000
"""Annotation ids are ``image_id * ANNOTATION_ID_STRIDE + k`` (k < stride)."""


@dataclass
class SegmentSummary:
    """What :func:`segment_everything` did: images segmented, skipped (JSON already there) and failed (problems)."""

    written: int = 0
    existing: int = 0
    masks: int = 0
    failed: list[str] = field(default_factory=list)


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_mask_generator(
    backend: Backend = "segment_anything",
    checkpoint: PathLike | None = None,
    model_type: str = "vit_h",
    variant: str = "sam2.1_hiera_l",
    model: torch.nn.Module | None = None,
    device: str | None = None,
    **params: Any,
) -> Any:
    """An automatic mask generator returning COCO RLEs.

    ``backend="segment_anything"``: ``SamAutomaticMaskGenerator`` on ``sam_model_registry[model_type]`` (``vit_b``,
    ``vit_l``, ``vit_h``) loaded from the local ``checkpoint``; ``backend="sam2"``: ``SAM2AutomaticMaskGenerator``
    on :func:`samlab.models.sam2.model.build_sam2_model` ``(variant)`` with ``checkpoint``. ``model``: an already
    built ``Sam`` / ``SAM2Base`` used instead (tests pass tiny random ones). ``device``: default
    :func:`default_device`. ``params``: generator options (``points_per_side``, ``points_per_batch``,
    ``pred_iou_thresh``, ``stability_score_thresh``, ``min_mask_region_area``, ...); None values keep the package's
    defaults.
    """
    params = {k: v for k, v in params.items() if v is not None}
    device = device or default_device()
    if backend == "segment_anything":
        from segment_anything import SamAutomaticMaskGenerator, sam_model_registry

        if model is None:
            if model_type not in sam_model_registry or model_type == "default":
                raise ValueError(f"unknown SAM model type '{model_type}'; expected vit_b, vit_l or vit_h")
            model = sam_model_registry[model_type](checkpoint=_existing(checkpoint))
        return SamAutomaticMaskGenerator(model.to(device).eval(), output_mode="coco_rle", **params)
    if backend == "sam2":
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        from samlab.models.sam2.model import build_sam2_model

        if model is None:
            model = build_sam2_model(variant, checkpoint=_existing(checkpoint), train=False)
        generator = SAM2AutomaticMaskGenerator(model.to(device).eval(), output_mode="coco_rle", **params)
        # The predictor assumes 1024-pixel inputs; use the model's own feature grid (stride 4, 8, 16).
        size = model.image_size
        generator.predictor._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]
        return generator
    raise ValueError(f"unknown backend '{backend}'; expected 'segment_anything' or 'sam2'")


def _existing(checkpoint: PathLike | None) -> str:
    if checkpoint is None:
        raise ValueError("a checkpoint path is needed to build the model")
    if not Path(checkpoint).is_file():
        raise DataError(checkpoint, "checkpoint file does not exist")
    return str(checkpoint)


def list_images(inputs: Sequence[PathLike]) -> list[Path]:
    """Image files (``.jpg``, ``.jpeg``, ``.png``) named by ``inputs`` — files, or folders searched recursively —
    sorted by path. Raises :class:`DataError` for a missing input, no image, or two images with one file stem (their
    outputs would collide)."""
    images: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            images += [p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        elif item.is_file():
            images.append(item)
        else:
            raise DataError(item, "image file or folder does not exist")
    images = sorted(set(images))
    if not images:
        raise DataError(inputs[0] if inputs else ".", "no image (.jpg, .jpeg, .png) found")
    seen: dict[str, Path] = {}
    for image in images:
        if image.stem in seen:
            raise DataError(image, f"same file stem as {seen[image.stem]}: both would write {image.stem}.json")
        seen[image.stem] = image
    return images


def _annotation(raw: dict[str, Any], ann_id: int) -> dict[str, Any]:
    segmentation = raw["segmentation"]
    return {
        "id": ann_id,
        "segmentation": {"size": [int(v) for v in segmentation["size"]], "counts": segmentation["counts"]},
        "area": int(raw["area"]),
        "bbox": [float(v) for v in raw["bbox"]],
        "predicted_iou": float(raw["predicted_iou"]),
        "stability_score": float(raw["stability_score"]),
        "point_coords": [[float(x), float(y)] for x, y in raw["point_coords"]],
        "crop_box": [float(v) for v in raw["crop_box"]],
    }


def segment_everything(
    images: Sequence[PathLike],
    out_dir: PathLike,
    generator: Any,
    skip_bad: bool = False,
    progress: bool = True,
) -> SegmentSummary:
    """Run ``generator`` (see :func:`build_mask_generator`) over ``images`` (see :func:`list_images`) and write
    ``out_dir/<stem>.json`` plus the image next to it.

    Images whose JSON exists are skipped. An unreadable image raises :class:`DataError`, or is listed in
    ``failed`` when ``skip_bad``.
    """
    paths = list_images(images)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = SegmentSummary()
    for image_id, path in track(list(enumerate(paths, start=1)), "segment everything", unit="img", enabled=progress):
        target = out_dir / f"{path.stem}.json"
        if target.is_file():
            summary.existing += 1
            continue
        try:
            image = read_image(path)
        except DataError as err:
            if not skip_bad:
                raise
            summary.failed.append(str(err))
            continue
        with torch.inference_mode():
            raw = generator.generate(image)
        if len(raw) >= ANNOTATION_ID_STRIDE:
            raise ValueError(f"{path}: {len(raw)} masks, more than the {ANNOTATION_ID_STRIDE} ids of one image")
        file_name = f"{path.stem}{path.suffix.lower()}"
        record = {
            "image": {"image_id": image_id, "width": image.shape[1], "height": image.shape[0], "file_name": file_name},
            "annotations": [_annotation(r, image_id * ANNOTATION_ID_STRIDE + k) for k, r in enumerate(raw)],
        }
        if (out_dir / file_name).resolve() != path.resolve():
            link_or_copy(path, out_dir / file_name)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(record, separators=(",", ":")), encoding="utf-8")
        # The JSON comes last and atomically: its presence means the image is done.
        os.replace(tmp, target)
        summary.written += 1
        summary.masks += len(raw)
    return summary

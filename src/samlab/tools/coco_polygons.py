"""``samlab data rle2polygon``: COCO RLE segmentations to polygons that re-rasterise to the same mask.

Contours are traced on pixel *corners* (pycocotools' polygon convention: pixel ``(x, y)`` covers ``[x, x+1) x
[y, y+1)``), so with ``tolerance=0`` the polygons re-rasterise exactly to the mask. A part's holes (OpenCV
``RETR_CCOMP``) are joined to its outer boundary by a zero-width cut, walked there and back: pycocotools fills
polygons by crossing parity, so the doubled cut cancels and each hole stays empty. Every part (connected component)
becomes its own polygon; parts smaller than ``min_area`` pixels are dropped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from samlab.masks import decode_segmentation, encode_rle, mask_iou, mask_to_box, rle_area
from samlab.progress import track

Polygon = list[float]


def _corner_contour(contour: np.ndarray) -> np.ndarray:
    """``[N, 2]`` int corner points of a contour traced on the 2x upsampled mask, consecutive repeats and points
    in the middle of straight runs removed."""
    # On the 2x grid a boundary sub-pixel's left/top side is even and its right/bottom side odd: ceil(u / 2) maps
    # both to the pixel corner they stand for.
    points = (contour.reshape(-1, 2) + 1) // 2
    points = points[np.any(points != np.roll(points, 1, axis=0), axis=1)]
    before, after = points - np.roll(points, 1, axis=0), np.roll(points, -1, axis=0) - points
    straight = (before[:, 0] * after[:, 1] == before[:, 1] * after[:, 0]) & ((before * after).sum(axis=1) > 0)
    return points[~straight]


def _shoelace(points: np.ndarray) -> float:
    x, y = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _simplify(points: np.ndarray, tolerance: float) -> np.ndarray:
    if tolerance <= 0:
        return points
    return cv2.approxPolyDP(points.reshape(-1, 1, 2).astype(np.int32), tolerance, True).reshape(-1, 2)


def _with_holes(outer: np.ndarray, holes: list[np.ndarray]) -> np.ndarray:
    """One closed vertex sequence: ``outer`` with each hole spliced in at its nearest outer vertex, there and back."""
    spliced: dict[int, list[np.ndarray]] = {}
    for hole in holes:
        distances = ((outer[:, None, :] - hole[None, :, :]) ** 2).sum(axis=-1)
        at_outer, at_hole = np.unravel_index(int(np.argmin(distances)), distances.shape)
        loop = np.concatenate([np.roll(hole, -int(at_hole), axis=0), hole[at_hole : at_hole + 1]])
        spliced.setdefault(int(at_outer), []).append(loop)
    pieces = []
    for k, point in enumerate(outer):
        pieces.append(point[None])
        for loop in spliced.get(k, []):
            pieces.extend([loop, point[None]])
    return np.concatenate(pieces)


def mask_to_polygons(mask: np.ndarray, min_area: float = 0.0, tolerance: float = 0.0) -> tuple[list[Polygon], int]:
    """COCO polygons (flat ``[x0, y0, x1, y1, ...]`` float lists) of an ``[H, W]`` bool mask.

    One polygon per connected part (8-connectivity), holes included through zero-width cuts (see the module
    docstring). ``min_area``: parts with fewer pixels (outer area minus holes) are dropped. ``tolerance``: Douglas-
    Peucker simplification in pixels (0: exact polygons, which re-rasterise to ``mask`` exactly); polygons left
    with fewer than 3 vertices are dropped. Returns the polygons and the number of parts dropped.
    """
    upsampled = np.repeat(np.repeat(mask.astype(np.uint8), 2, axis=0), 2, axis=1)
    contours, hierarchy = cv2.findContours(upsampled, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if hierarchy is None:
        return [], 0
    links = hierarchy[0]  # per contour: next, previous, first child, parent
    polygons: list[Polygon] = []
    dropped = 0
    for i, contour in enumerate(contours):
        if links[i][3] != -1:
            continue
        outer = _corner_contour(contour)
        holes = []
        child = links[i][2]
        while child != -1:
            holes.append(_corner_contour(contours[child]))
            child = links[child][0]
        if _shoelace(outer) - sum(_shoelace(h) for h in holes) < min_area:
            dropped += 1
            continue
        outer = _simplify(outer, tolerance)
        holes = [h for h in (_simplify(h, tolerance) for h in holes) if len(h) >= 3]
        if len(outer) < 3:
            dropped += 1
            continue
        polygons.append(_with_holes(outer, holes).astype(np.float64).reshape(-1).tolist())
    return polygons, dropped


def rle_to_polygons(
    in_file: str | os.PathLike[str],
    out_file: str | os.PathLike[str],
    min_area: float = 0.0,
    tolerance: float = 0.0,
    include_crowd: bool = False,
    strict: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Rewrite the RLE segmentations of a COCO instances JSON as polygons.

    ``in_file``: the COCO JSON (compressed or uncompressed RLE, polygons kept as they are); ``out_file``: where the
    converted JSON goes (other top-level keys kept). ``min_area``/``tolerance``: see :func:`mask_to_polygons`.
    Crowd annotations (``iscrowd: 1``) keep their RLE unless ``include_crowd``. Converted annotations get their
    ``area`` and ``bbox`` recomputed from the re-rasterised polygons; one whose every part is dropped is removed
    (and counted). Bad annotations or image entries (see :class:`~samlab.data.formats.coco.COCOReader`) raise
    :class:`DataError` naming the file and the annotation id when ``strict``, else are left out and counted.

    Returns counts: ``annotations`` written, ``converted``, ``removed`` (no part left), ``dropped_parts``,
    ``skipped`` (bad input), and ``mean_iou`` of the re-rasterised polygons against the original masks over the
    converted annotations that were kept (None when none was converted).
    """
    from samlab.data.formats.coco import COCOReader

    reader = COCOReader(in_file, image_root=".", include_crowd=True, strict=strict, check_files=False)
    annotations: list[dict[str, Any]] = []
    counts = {"converted": 0, "removed": 0, "dropped_parts": 0}
    ious: list[float] = []
    for i in track(range(len(reader)), "rle2polygon", unit="img", enabled=progress):
        info = reader.coco_image(i)
        height, width = int(info["height"]), int(info["width"])
        for ann in reader.annotations(i):
            if isinstance(ann["segmentation"], list) or (ann.get("iscrowd", 0) and not include_crowd):
                annotations.append(ann)
                continue
            mask = decode_segmentation(ann["segmentation"], height, width)
            polygons, dropped = mask_to_polygons(mask, min_area=min_area, tolerance=tolerance)
            counts["dropped_parts"] += dropped
            counts["converted"] += 1
            if not polygons:
                counts["removed"] += 1
                continue
            redrawn = decode_segmentation(polygons, height, width)
            ious.append(mask_iou(redrawn, mask))
            x0, y0, x1, y1 = (float(v) for v in mask_to_box(redrawn))
            annotations.append(
                {
                    **ann,
                    "segmentation": polygons,
                    "area": float(rle_area(encode_rle(redrawn))),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                }
            )
    dataset = {
        **reader.extra,
        "images": [reader.coco_image(i) for i in range(len(reader))],
        "annotations": annotations,
        "categories": list(reader.categories.values()),
    }
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dataset))
    return {
        "annotations": len(annotations),
        **counts,
        "skipped": len(reader.problems),
        "mean_iou": float(np.mean(ious)) if ious else None,
    }

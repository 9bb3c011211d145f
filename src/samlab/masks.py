"""Mask, box and RLE helpers: the one place where samlab converts between mask representations.

Masks are numpy arrays: one mask is ``[H, W]`` bool, a stack is ``[N, H, W]`` bool. Boxes are ``float32``
``[x0, y0, x1, y1]`` in pixels with exclusive right/bottom edges (a single pixel at (3, 5) is
``[3, 5, 4, 6]``), or COCO ``[x, y, w, h]`` where the function name says so. RLEs are COCO RLE dicts
``{"size": [H, W], "counts": str}`` (compressed) or ``{"size": [H, W], "counts": [int, ...]}`` (uncompressed).
No torch in this module: readers and tools use it too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

RLE = dict[str, Any]


def encode_rle(mask: np.ndarray) -> RLE:
    """Encode one ``[H, W]`` mask (any dtype; non-zero is foreground) as a compressed COCO RLE with str counts."""
    if mask.ndim != 2:
        raise ValueError(f"encode_rle expects an [H, W] mask, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _compressed(rle: RLE) -> RLE:
    counts = rle["counts"]
    height, width = (int(v) for v in rle["size"])
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    if isinstance(counts, str):
        return {"size": [height, width], "counts": counts.encode("ascii")}
    return {"size": [height, width], "counts": counts}


def decode_rle(rle: RLE) -> np.ndarray:
    """Decode a compressed or uncompressed COCO RLE to an ``[H, W]`` bool mask."""
    return mask_utils.decode(_compressed(rle)).astype(bool)


def rle_area(rle: RLE) -> int:
    """Foreground pixel count of an RLE, without decoding it."""
    return int(mask_utils.area(_compressed(rle)))


def rle_is_empty(rle: RLE | None) -> bool:
    """True for ``None`` or an RLE with no foreground pixel (SA-V writes those for absent objects)."""
    if rle is None:
        return True
    counts = rle["counts"]
    if isinstance(counts, list):
        return not any(counts[1::2])
    return rle_area(rle) == 0


def decode_segmentation(segmentation: RLE | list[list[float]], height: int, width: int) -> np.ndarray:
    """Decode a COCO ``segmentation`` field: polygons, uncompressed RLE or compressed RLE, to ``[H, W]`` bool."""
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), dtype=bool)
        rles = mask_utils.frPyObjects(polygons, height, width)
        return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    return decode_rle(segmentation)


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Tight ``[x0, y0, x1, y1]`` box (float32, exclusive end) of an ``[H, W]`` mask; zeros for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return np.zeros(4, dtype=np.float32)
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """``[N, 4]`` float32 boxes of an ``[N, H, W]`` mask stack (zeros for empty masks)."""
    if len(masks) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    return np.stack([mask_to_box(m) for m in masks])


def xywh_to_xyxy(box: np.ndarray | list[float]) -> np.ndarray:
    """COCO ``[x, y, w, h]`` to ``[x0, y0, x1, y1]`` (float32)."""
    x, y, w, h = (float(v) for v in box)
    return np.array([x, y, x + w, y + h], dtype=np.float32)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``[H, W]`` bool masks (1.0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union

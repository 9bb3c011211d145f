"""Class-agnostic boundary targets (DirectSAM): every region's outline in one ``[H, W]`` bool map.

The boundary of a region is its morphological gradient (dilation minus erosion) by DirectSAM's kernel
(:func:`boundary_kernel`: a ``thickness`` square up to 3, a filled circle of radius ``thickness // 2`` above); the
boundaries of all regions are OR-ed and a band of ``thickness`` pixels along the image border is set. This is
DirectSAM's ``label_map_to_boundary`` (``data/transforms.py``) pixel for pixel, for label maps
(:func:`label_map_boundary`, :func:`label_map_target`: every value, 0 included, is one region).

Instance masks (SA-1B, COCO) take one deliberate difference: :func:`boundary_target` uses the masks one by one and
ORs their outlines. DirectSAM first sums SA-1B's masks into a uint8 label map, where overlapping masks add up to a
value of their own and the 255th mask wraps to 0; here overlapping masks keep their own outlines. For masks that do
not overlap the two are the same map. No torch here.
"""

from __future__ import annotations

import cv2
import numpy as np


def boundary_kernel(thickness: int) -> np.ndarray:
    """DirectSAM's ``[thickness, thickness]`` uint8 structuring element: all ones for ``thickness <= 3``, else the
    filled circle of radius ``thickness // 2`` centred on pixel ``(thickness // 2, thickness // 2)``."""
    if thickness < 2:
        raise ValueError(f"boundary thickness must be >= 2 (a 1-pixel kernel has no gradient), got {thickness}")
    if thickness <= 3:
        return np.ones((thickness, thickness), np.uint8)
    kernel = np.zeros((thickness, thickness), np.uint8)
    center = thickness // 2
    cv2.circle(kernel, (center, center), center, 1, -1)
    return kernel


def boundary_target(masks: np.ndarray, thickness: int = 3, border: bool = True) -> np.ndarray:
    """Boundary map of a stack of instance masks: the OR of each mask's morphological gradient.

    Args:
        masks: ``[O, H, W]`` bool (or 0/1) masks; they may overlap; ``O`` may be 0.
        thickness: size of :func:`boundary_kernel` (>= 2); the line is about ``thickness`` pixels wide, across
            each mask's edge.
        border: set a band of ``thickness`` pixels along the image border (DirectSAM's targets have it).

    Returns:
        ``[H, W]`` bool: True on any mask's boundary (and on the border band).
    """
    if masks.ndim != 3:
        raise ValueError(f"boundary_target expects [O, H, W] masks, got shape {masks.shape}")
    height, width = masks.shape[1:]
    out = np.zeros((height, width), dtype=np.uint8)
    kernel = boundary_kernel(thickness)
    pad = thickness // 2 + 1
    for mask in masks:
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(mask.any(axis=0))
        # Work on the mask's box grown by the kernel radius: the same result as on the whole image, much faster
        # for SA-1B's hundred small masks per large image.
        y0, y1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, height)
        x0, x1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, width)
        crop = np.ascontiguousarray(mask[y0:y1, x0:x1], dtype=np.uint8)
        out[y0:y1, x0:x1] |= cv2.dilate(crop, kernel) - cv2.erode(crop, kernel)
    if border:
        band = min(thickness, height, width)
        out[:band] = out[-band:] = 1
        out[:, :band] = out[:, -band:] = 1
    return out.astype(bool)


def label_map_masks(label_map: np.ndarray) -> np.ndarray:
    """Split an ``[H, W]`` integer label map into ``[R, H, W]`` bool masks, one per distinct value (0 included)."""
    values = np.unique(label_map)
    return label_map[None] == values[:, None, None]


def label_map_boundary(label_map: np.ndarray, thickness: int = 3, border: bool = True) -> np.ndarray:
    """:func:`boundary_target` of a label map (semantic/panoptic PNG): each distinct value, 0 included, is one
    region; equal to DirectSAM's ``label_map_to_boundary(label_map, thickness)`` (with ``border``)."""
    if label_map.ndim != 2:
        raise ValueError(f"label_map_boundary expects an [H, W] label map, got shape {label_map.shape}")
    return boundary_target(label_map_masks(label_map), thickness, border)


def label_map_target(label_map: np.ndarray, size: int, thickness: int = 3) -> np.ndarray:
    """DirectSAM's target of a label map at the model input: the ``[H, W]`` integer map resized (nearest) to
    ``[size, size]``, then :func:`label_map_boundary` (``[size, size]`` bool)."""
    if label_map.ndim != 2:
        raise ValueError(f"label_map_target expects an [H, W] label map, got shape {label_map.shape}")
    # Region indices instead of the values: the same regions after nearest resizing, in a dtype OpenCV keeps
    # (it narrows 64-bit ids).
    regions = np.unique(label_map, return_inverse=True)[1].reshape(label_map.shape).astype(np.int32)
    return label_map_boundary(cv2.resize(regions, (size, size), interpolation=cv2.INTER_NEAREST), thickness)


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of ``[O, H, W]`` bool masks (or boundary maps) to ``[O, size[0], size[1]]``."""
    out = np.zeros((len(masks), *size), dtype=bool)
    for i, mask in enumerate(masks):
        out[i] = cv2.resize(mask.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0
    return out

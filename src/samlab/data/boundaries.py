"""Class-agnostic boundary targets (DirectSAM): every object's outline in one ``[H, W]`` bool map.

The boundary of a mask is its morphological gradient (dilation minus erosion) with a circular kernel of diameter
``thickness``; the boundaries of all masks are OR-ed and a band of ``thickness`` pixels along the image border is
set, as DirectSAM does. The masks are used one by one, never summed into a label map: overlapping SA-1B masks (and
more than 255 of them) keep their own outlines, where DirectSAM's uint8 sum would merge or wrap them.
No torch here.
"""

from __future__ import annotations

import cv2
import numpy as np


def boundary_kernel(thickness: int) -> np.ndarray:
    """The circular ``[thickness, thickness]`` uint8 structuring element (OpenCV's ellipse)."""
    if thickness < 1:
        raise ValueError(f"boundary thickness must be >= 1, got {thickness}")
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (thickness, thickness))


def _mask_boundary(mask: np.ndarray, kernel: np.ndarray, thin: bool) -> np.ndarray:
    """Morphological gradient of one ``[h, w]`` uint8 mask (inner 1-pixel outline when ``thin``)."""
    if thin:
        # A 1x1 kernel has an empty gradient: thickness 1 means the mask's pixels with a 4-neighbour outside it.
        return mask - cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)))
    return cv2.dilate(mask, kernel) - cv2.erode(mask, kernel)


def boundary_target(masks: np.ndarray, thickness: int = 3, border: bool = True) -> np.ndarray:
    """Boundary map of a stack of instance masks.

    Args:
        masks: ``[O, H, W]`` bool (or 0/1) masks; they may overlap; ``O`` may be 0.
        thickness: diameter of the circular kernel of the morphological gradient (the line is about
            ``thickness - 1`` pixels wide, half inside and half outside each mask); 1 gives the 1-pixel inner outline.
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
        out[y0:y1, x0:x1] |= _mask_boundary(crop, kernel, thin=thickness == 1)
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
    """:func:`boundary_target` of a label map (semantic/panoptic PNG): each distinct value is one region."""
    if label_map.ndim != 2:
        raise ValueError(f"label_map_boundary expects an [H, W] label map, got shape {label_map.shape}")
    return boundary_target(label_map_masks(label_map), thickness, border)


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of ``[O, H, W]`` bool masks to ``[O, size[0], size[1]]``."""
    out = np.zeros((len(masks), *size), dtype=bool)
    for i, mask in enumerate(masks):
        out[i] = cv2.resize(mask.view(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0
    return out


def resize_boundary(boundary: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an ``[H, W]`` bool boundary map to ``size`` (H, W): area-weighted, a pixel is set when at least half
    covered, so thin lines survive a moderate downscale better than with nearest-neighbour sampling."""
    resized = cv2.resize(boundary.astype(np.uint8) * 255, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return resized >= 128

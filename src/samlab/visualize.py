"""Drawing for humans: mask overlays, boxes, prompt clicks and frame strips (numpy + OpenCV, uint8 RGB).

Used by ``samlab data browse`` and by :class:`samlab.callbacks.ValidationImages` (images in W&B and TensorBoard).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from samlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD

POSITIVE_CLICK = (0, 255, 0)
NEGATIVE_CLICK = (255, 0, 0)


def object_colors(num: int) -> np.ndarray:
    """``[num, 3]`` uint8 RGB colours, distinct for neighbouring indices (golden-ratio hues, full saturation)."""
    hues = (np.arange(num) * 0.618033988749895) % 1.0
    hsv = np.stack([hues * 179, np.full(num, 220), np.full(num, 255)], axis=1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def to_uint8_image(
    image: torch.Tensor | np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> np.ndarray:
    """A displayable ``[H, W, 3]`` uint8 RGB image from a ``[3, H, W]`` tensor: uint8 as is, float un-normalised
    with ``mean``/``std`` (0..1 statistics) and clipped."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.dtype != torch.uint8:
            m = torch.tensor(mean, dtype=image.dtype).view(3, 1, 1)
            s = torch.tensor(std, dtype=image.dtype).view(3, 1, 1)
            image = ((image * s + m) * 255).round().clamp(0, 255).to(torch.uint8)
        image = image.permute(1, 2, 0).numpy()
    return np.ascontiguousarray(image, dtype=np.uint8)


def overlay_masks(
    image: np.ndarray, masks: np.ndarray, colors: np.ndarray | None = None, alpha: float = 0.5, contour: bool = True
) -> np.ndarray:
    """``image`` ``[H, W, 3]`` uint8 with each of ``masks`` ``[O, H, W]`` bool blended in its colour (``alpha``)
    and outlined (``contour``). Returns a new uint8 image."""
    out = image.astype(np.float32)
    colors = object_colors(len(masks)) if colors is None else colors
    for mask, color in zip(masks, colors):
        mask = np.asarray(mask, dtype=bool)
        out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    out = out.round().astype(np.uint8)
    if contour:
        for mask, color in zip(masks, colors):
            found, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, found, -1, tuple(int(c) for c in color), 1)
    return out


def draw_boxes(image: np.ndarray, boxes: np.ndarray, colors: np.ndarray | None = None, thickness: int = 1) -> None:
    """Draw ``boxes`` ``[N, 4]`` (x1, y1, x2, y2 pixels) on ``image`` in place, one colour per box."""
    colors = object_colors(len(boxes)) if colors is None else colors
    for box, color in zip(np.asarray(boxes, np.float64), colors):
        x1, y1, x2, y2 = (round(v) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), tuple(int(c) for c in color), thickness)


def draw_points(image: np.ndarray, points: np.ndarray, labels: np.ndarray, radius: int = 2) -> None:
    """Draw prompt clicks on ``image`` in place: ``points`` ``[N, 2]`` (x, y pixels), ``labels`` ``[N]``
    (1 positive: green, 0 negative: red), each a filled disc with a white rim."""
    for (x, y), label in zip(np.asarray(points, np.float64), np.asarray(labels)):
        centre = (round(x), round(y))
        cv2.circle(image, centre, radius + 1, (255, 255, 255), -1)
        cv2.circle(image, centre, radius, POSITIVE_CLICK if label == 1 else NEGATIVE_CLICK, -1)


def frame_strip(frames: Sequence[np.ndarray], max_frames: int = 6, gap: int = 2) -> np.ndarray:
    """Up to ``max_frames`` of ``frames`` (``[H, W, 3]`` uint8, same size), evenly spaced, side by side with a
    ``gap``-pixel white separator. Returns ``[H, W', 3]`` uint8."""
    if not frames:
        raise ValueError("frame_strip needs at least one frame")
    picks = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    height = frames[0].shape[0]
    separator = np.full((height, gap, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for i in picks:
        parts += [frames[i], separator]
    return np.concatenate(parts[:-1], axis=1)

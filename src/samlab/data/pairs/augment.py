"""The random augmentation of one MASA view: one affine map per view, applied once to the image and to each mask."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_PAD_VALUE = 114  # YOLOX-style grey for the canvas outside the transformed image


@dataclass
class PairAugment:
    """The random augmentation of one view (MASA's recipe, YOLOX-style).

    Args:
        resize_range: the image is first resized to fit the ``size`` square, then scaled by a factor drawn in this
            range (random resize); the crop (random crop) is a random window of the ``size`` square.
        rotate: largest rotation in degrees of the random affine.
        affine_scale: range of the affine's extra scaling.
        translate: largest affine translation, as a fraction of ``size``.
        flip_prob: probability of a horizontal flip.
        hsv_delta: largest additive change of hue (OpenCV units, 0-180), saturation and value (0-255).
        mixup_prob: probability to blend a partner image (and add its instances) into the view.
        mixup_alpha: weight of the partner image in the blend.
    """

    resize_range: tuple[float, float] = (0.5, 1.5)
    rotate: float = 10.0
    affine_scale: tuple[float, float] = (0.8, 1.2)
    translate: float = 0.1
    flip_prob: float = 0.5
    hsv_delta: tuple[int, int, int] = (5, 30, 30)
    mixup_prob: float = 0.5
    mixup_alpha: float = 0.5

    def matrix(self, height: int, width: int, size: int, rng: np.random.Generator) -> np.ndarray:
        """A random ``[2, 3]`` float64 affine map from an ``height`` x ``width`` image onto the ``size`` square."""
        fit = size / max(height, width)
        scale = fit * rng.uniform(*self.resize_range) * rng.uniform(*self.affine_scale)
        angle = np.deg2rad(rng.uniform(-self.rotate, self.rotate))
        cos, sin = scale * np.cos(angle), scale * np.sin(angle)
        linear = np.array([[cos, -sin], [sin, cos]])
        if rng.random() < self.flip_prob:
            linear = linear @ np.array([[-1.0, 0.0], [0.0, 1.0]])
        # Image centre to a random point around the canvas centre: crop window and translation in one shift.
        centre = np.array([width / 2.0, height / 2.0])
        slack = np.maximum(np.abs(linear) @ np.array([width, height]) - size, 0.0) / 2.0
        target = size / 2.0 + rng.uniform(-1, 1, size=2) * (slack + self.translate * size)
        return np.concatenate([linear, (target - linear @ centre)[:, None]], axis=1)

    def jitter_hsv(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``image`` ``[H, W, 3]`` uint8 RGB with random additive hue/saturation/value changes."""
        deltas = rng.integers(-np.asarray(self.hsv_delta), np.asarray(self.hsv_delta) + 1)
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + deltas[0]) % 180
        hsv[..., 1:] = np.clip(hsv[..., 1:] + deltas[1:], 0, 255)
        return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def warp_view(image: np.ndarray, masks: np.ndarray, matrix: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply the affine ``matrix`` ``[2, 3]`` to ``image`` ``[H, W, 3]`` uint8 and ``masks`` ``[N, H, W]`` bool.

    Returns the ``[size, size, 3]`` uint8 image (outside pixels grey) and the ``[N, size, size]`` bool masks
    (nearest-neighbour, so a mask never bleeds into its neighbours). ``matrix`` maps continuous coordinates whose
    origin is the top-left corner of the top-left pixel (the convention of samlab's boxes).
    """
    # OpenCV maps pixel indices (centres): shift by half a pixel on each side so that pixel corners map exactly.
    matrix = matrix.copy()
    matrix[:, 2] += matrix[:, :2] @ np.array([0.5, 0.5]) - 0.5
    warped = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(_PAD_VALUE, _PAD_VALUE, _PAD_VALUE)
    )
    out = np.zeros((len(masks), size, size), dtype=bool)
    for i, mask in enumerate(masks):
        out[i] = cv2.warpAffine(mask.astype(np.uint8), matrix, (size, size), flags=cv2.INTER_NEAREST) > 0
    return warped, out

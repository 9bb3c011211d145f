"""The random augmentation of one MASA view, as MASA's training pipeline (``configs/datasets/masa_dataset.py``).

Per view, independently (``share_random_params=False``), in the reference's order: ``SeqRandomAffine`` (rotation,
scaling, shear about the image origin, translation; the output keeps the image's size, grey 114 outside), ``SeqMixUp``
(the partner image fitted into the ``size`` square, scaled by a jitter factor, flipped, randomly cropped to the
frame, blended 50/50), ``YOLOXHSVRandomAug`` (additive hue / saturation / value gains, each channel switched on
with probability 1/2), ``RandomResize`` (the frame fitted to ``size * ratio``), ``RandomCrop`` (a ``size`` window),
``RandomFlip`` (horizontal) and ``Pad`` (grey 114 to the ``size`` square).

Every geometric step is an affine map, so :meth:`PairAugment.draw` composes them into one matrix per source (the
image, the partner) and :func:`render_view` warps each image and mask once, straight into the output square; the
region of the output that holds the frame (the rest is the reference's padding) is kept apart so that padding stays
grey and masks end at the frame, as the reference's boxes do. Boxes are the boxes of the warped masks, so they stay
exact under rotation and shear (the reference projects box corners, which inflates rotated boxes).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_PAD_VALUE = 114  # YOLOX-style grey for the canvas outside the transformed image


def _scale(sx: float, sy: float) -> np.ndarray:
    return np.diag([sx, sy, 1.0])


def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def _flip(width: float) -> np.ndarray:
    return np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class ViewParams:
    """The random draw of one view.

    ``image_matrix`` / ``partner_matrix``: ``[3, 3]`` float64 maps from the image's (the mixup partner's; None
    without mixup) continuous pixel coordinates to the output square's; ``frame``: ``(x1, y1, x2, y2)`` the part of
    the output square that holds the augmented frame (outside it: padding); ``hsv_gains``: ``[3]`` int16 additive
    hue (OpenCV units, 0-180), saturation and value gains.
    """

    image_matrix: np.ndarray
    partner_matrix: np.ndarray | None
    frame: tuple[int, int, int, int]
    hsv_gains: np.ndarray


@dataclass
class PairAugment:
    """MASA's per-view augmentation; the defaults are the reference's (mmdet's defaults where MASA sets none).

    Args:
        rotate: largest rotation in degrees (``SeqRandomAffine.max_rotate_degree``).
        affine_scale: range of the affine scaling (``scaling_ratio_range``).
        translate: largest translation as a fraction of the image's width / height (``max_translate_ratio``).
        shear: largest shear in degrees, drawn for x and y (``max_shear_degree``).
        mixup_prob: probability that a view is blended with the sample's partner image (the reference always
            blends: 1).
        mixup_scale: range of the partner's jitter factor (``SeqMixUp.ratio_range``).
        mixup_flip_prob: probability to flip the partner horizontally.
        mixup_alpha: weight of the partner in the blend (0.5 in the reference).
        hsv_delta: largest hue, saturation and value gains (``YOLOXHSVRandomAug`` 5, 30, 30).
        resize_range: the frame is fitted to ``size * ratio`` with ``ratio`` drawn in this range (``RandomResize``).
        flip_prob: probability of a horizontal flip of the view (``RandomFlip``).
    """

    rotate: float = 10.0
    affine_scale: tuple[float, float] = (0.5, 1.5)
    translate: float = 0.1
    shear: float = 2.0
    mixup_prob: float = 1.0
    mixup_scale: tuple[float, float] = (0.8, 1.6)
    mixup_flip_prob: float = 0.5
    mixup_alpha: float = 0.5
    hsv_delta: tuple[int, int, int] = (5, 30, 30)
    resize_range: tuple[float, float] = (0.1, 2.0)
    flip_prob: float = 0.5

    def affine(self, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        """``SeqRandomAffine``'s ``[3, 3]`` map ``translate @ shear @ rotate @ scale`` (about the image origin) of an
        ``height`` x ``width`` image onto a frame of the same size."""
        angle = np.deg2rad(rng.uniform(-self.rotate, self.rotate))
        scale = rng.uniform(*self.affine_scale)
        shear_x, shear_y = np.deg2rad(rng.uniform(-self.shear, self.shear, size=2))
        tx, ty = rng.uniform(-self.translate, self.translate, size=2) * np.array([width, height])
        rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0, 0, 1.0]])
        shear = np.array([[1.0, np.tan(shear_x), 0.0], [np.tan(shear_y), 1.0, 0.0], [0.0, 0.0, 1.0]])
        return _translate(tx, ty) @ shear @ rotation @ _scale(scale, scale)

    def mixup(
        self, partner_hw: tuple[int, int], frame_hw: tuple[int, int], size: int, rng: np.random.Generator
    ) -> np.ndarray:
        """``SeqMixUp``'s ``[3, 3]`` map of the partner image (``partner_hw``) onto the frame (``frame_hw``): fitted
        into the ``size`` square at its top-left corner, the square scaled by the jitter factor, flipped, and a
        frame-sized window cut at a random offset."""
        height, width = partner_hw
        fit = min(size / height, size / width)
        jittered = int(size * rng.uniform(*self.mixup_scale))
        matrix = _scale(jittered / size * int(width * fit) / width, jittered / size * int(height * fit) / height)
        if rng.random() < self.mixup_flip_prob:
            matrix = _flip(jittered) @ matrix
        # The reference draws the offset with numpy's exclusive upper bound: the last position is never taken.
        frame_h, frame_w = frame_hw
        off_y = int(rng.integers(0, jittered - frame_h)) if jittered > frame_h else 0
        off_x = int(rng.integers(0, jittered - frame_w)) if jittered > frame_w else 0
        return _translate(-off_x, -off_y) @ matrix

    def gains(self, rng: np.random.Generator) -> np.ndarray:
        """``YOLOXHSVRandomAug``'s ``[3]`` int16 gains: uniform in ``±hsv_delta``, each channel on with
        probability 1/2, truncated to integers."""
        gains = rng.uniform(-1.0, 1.0, size=3) * np.asarray(self.hsv_delta, dtype=np.float64)
        return (gains * rng.integers(0, 2, size=3)).astype(np.int16)

    def output(
        self, frame_hw: tuple[int, int], size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """``RandomResize`` + ``RandomCrop`` + ``RandomFlip`` + ``Pad``: the ``[3, 3]`` map of the frame onto the
        output ``size`` square, and the ``(x1, y1, x2, y2)`` part of the square the frame covers."""
        height, width = frame_hw
        target = int(size * rng.uniform(*self.resize_range))
        factor = target / max(height, width)
        new_w, new_h = max(int(width * factor + 0.5), 1), max(int(height * factor + 0.5), 1)
        off_y = int(rng.integers(0, max(new_h - size, 0) + 1))
        off_x = int(rng.integers(0, max(new_w - size, 0) + 1))
        crop_w, crop_h = min(new_w, size), min(new_h, size)
        matrix = _translate(-off_x, -off_y) @ _scale(new_w / width, new_h / height)
        if rng.random() < self.flip_prob:
            matrix = _flip(crop_w) @ matrix
        return matrix, (0, 0, crop_w, crop_h)

    def draw(
        self,
        image_hw: tuple[int, int],
        partner_hw: tuple[int, int] | None,
        size: int,
        rng: np.random.Generator,
    ) -> ViewParams:
        """The parameters of one view of an ``image_hw`` image (blended with a ``partner_hw`` partner when given and
        drawn with ``mixup_prob``), in the reference's order of steps."""
        affine = self.affine(*image_hw, rng)
        partner = None
        if partner_hw is not None and rng.random() < self.mixup_prob:
            partner = self.mixup(partner_hw, image_hw, size, rng)
        hsv = self.gains(rng)
        output, frame = self.output(image_hw, size, rng)
        return ViewParams(
            image_matrix=output @ affine,
            partner_matrix=None if partner is None else output @ partner,
            frame=frame,
            hsv_gains=hsv,
        )


def fit_params(image_hw: tuple[int, int], size: int) -> ViewParams:
    """No augmentation: the image fitted into the ``size`` square (top-left, padded), as MASA's test pipeline."""
    factor = size / max(image_hw)
    new_h, new_w = (max(int(side * factor + 0.5), 1) for side in image_hw)
    matrix = _scale(new_w / image_hw[1], new_h / image_hw[0])
    return ViewParams(matrix, None, (0, 0, min(new_w, size), min(new_h, size)), np.zeros(3, dtype=np.int16))


def warp_view(image: np.ndarray, masks: np.ndarray, matrix: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply the affine ``matrix`` (``[2, 3]`` or ``[3, 3]``) to ``image`` ``[H, W, 3]`` uint8 and ``masks``
    ``[N, H, W]`` bool.

    Returns the ``[size, size, 3]`` uint8 image (outside pixels grey, bilinear) and the ``[N, size, size]`` bool
    masks (nearest-neighbour, so a mask never bleeds into its neighbours). ``matrix`` maps continuous coordinates
    whose origin is the top-left corner of the top-left pixel (the convention of samlab's boxes).
    """
    # OpenCV maps pixel indices (centres): shift by half a pixel on each side so that pixel corners map exactly.
    matrix = np.array(matrix[:2], dtype=np.float64)
    matrix[:, 2] += matrix[:, :2] @ np.array([0.5, 0.5]) - 0.5
    warped = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(_PAD_VALUE, _PAD_VALUE, _PAD_VALUE)
    )
    out = np.zeros((len(masks), size, size), dtype=bool)
    for i, mask in enumerate(masks):
        out[i] = cv2.warpAffine(mask.astype(np.uint8), matrix, (size, size), flags=cv2.INTER_NEAREST) > 0
    return warped, out


def jitter_hsv(image: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """``image`` ``[H, W, 3]`` uint8 RGB with the additive ``gains`` ``[3]`` on hue (mod 180), saturation and value
    (clipped to 0-255)."""
    if not gains.any():
        return image
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + gains[0]) % 180
    hsv[..., 1:] = np.clip(hsv[..., 1:] + gains[1:], 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def render_view(
    image: np.ndarray,
    masks: np.ndarray,
    params: ViewParams,
    size: int,
    partner: tuple[np.ndarray, np.ndarray] | None = None,
    mixup_alpha: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one view: ``image`` ``[H, W, 3]`` uint8 and ``masks`` ``[N, H, W]`` bool warped by ``params``, blended
    with ``partner`` (its image and ``[M, h, w]`` masks) when ``params`` has a partner matrix, HSV-jittered, the
    padding outside ``params.frame`` grey. Returns the ``[size, size, 3]`` uint8 image and the ``[N (+ M), size,
    size]`` bool masks, cut to the frame (partner masks last, under the blend)."""
    out, out_masks = warp_view(image, masks, params.image_matrix, size)
    if params.partner_matrix is not None and partner is not None:
        p_out, p_masks = warp_view(partner[0], partner[1], params.partner_matrix, size)
        # The reference blends in float and truncates to uint8.
        out = (out.astype(np.float32) * (1.0 - mixup_alpha) + p_out.astype(np.float32) * mixup_alpha).astype(np.uint8)
        out_masks = np.concatenate([out_masks, p_masks])
    out = jitter_hsv(out, params.hsv_gains)
    x1, y1, x2, y2 = params.frame
    inside = np.zeros((size, size), dtype=bool)
    inside[y1:y2, x1:x2] = True
    out[~inside] = _PAD_VALUE
    out_masks &= inside
    return np.ascontiguousarray(out), out_masks

"""SAM's input geometry for instance data: resize the longest side to ``S``, zero-pad to ``S x S``.

segment_anything feeds its image encoder a picture whose longest side is resized to ``S`` (``ResizeLongestSide``)
and whose bottom/right are padded to a square after normalisation. The transforms here do the same on numpy clips
and hand frames over as uint8 (normalised later on the device, see :func:`samlab.data.transforms.normalize_images`):
the padding is filled with :data:`SAM_PAD_FILL`, the mean colour, which normalises to ~0 as SAM's zero padding.

* :class:`ResizeLongestSideTransform` (evaluation): resize + pad, no randomness; predictions map back to the original
  image by cropping ``resize_longest_side_shape(H, W, S)`` and resizing (see :func:`unpad_resize`).
* :class:`LargeScaleJitterTransform` (training): large-scale jitter (random longest side ``r * S``), random crop or
  pad to ``S x S``, horizontal flip. Instances the crop removes are dropped from the clip; a crop that removes every
  instance is redrawn, and after ``max_tries`` failures the image raises :class:`DataError`, so a data module with
  ``skip_bad_samples`` skips it and counts it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import cv2
import numpy as np

from samlab.data.sampling import Clip
from samlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform, pack_masks, unpack_masks
from samlab.errors import DataError

# SAM normalises with pixel mean (123.675, 116.28, 103.53) and pads with zeros after; in uint8 the mean colour
# (rounded) plays the part of that zero.
SAM_PAD_FILL: tuple[int, int, int] = (124, 116, 104)


def resize_longest_side_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """``(h, w)`` of an ``height x width`` image whose longest side is resized to ``size``, as segment_anything's
    ``ResizeLongestSide.get_preprocess_shape`` (round half up)."""
    scale = size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def _place(
    image: np.ndarray, shape: tuple[int, int], offset: tuple[int, int], size: int, fill: Sequence[int] | int
) -> np.ndarray:
    """Resize ``image`` to ``shape`` (h, w), cut the ``size x size`` window whose top-left corner is ``offset``
    (y, x >= 0), and pad what the window lacks bottom/right with ``fill``. 2-D uint8 planes (masks) are resized
    with nearest neighbours, frames bilinearly."""
    height, width = shape
    interpolation = cv2.INTER_NEAREST if image.dtype == np.uint8 and image.ndim == 2 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (width, height), interpolation=interpolation)
    y, x = offset
    window = resized[y : y + size, x : x + size]
    out = np.empty((size, size, *image.shape[2:]), dtype=image.dtype)
    out[...] = np.asarray(fill, dtype=image.dtype)
    out[: window.shape[0], : window.shape[1]] = window
    return out


def _place_masks(packed: np.ndarray, shape: tuple[int, int], offset: tuple[int, int], size: int) -> np.ndarray:
    """Nearest resize + crop + zero pad of bit-packed ``[P, H, W]`` uint8 mask planes (exact for every bit)."""
    return np.stack([_place(plane, shape, offset, size, 0) for plane in packed])


def _finish(
    transform: ClipTransform, clip: Clip, frames: list[np.ndarray], masks: np.ndarray, keep: np.ndarray | None
) -> Clip:
    """The transformed clip: frames to tensors, masks ``[T, O, S, S]``, objects filtered by ``keep [O]``."""
    if keep is None:
        return dataclasses.replace(clip, frames=transform.to_tensors(frames), masks=masks)
    labels = [label for label, k in zip(clip.labels, keep, strict=True) if k] if clip.labels else []
    return dataclasses.replace(
        clip,
        frames=transform.to_tensors(frames),
        masks=masks[:, keep],
        object_ids=[i for i, k in zip(clip.object_ids, keep, strict=True) if k],
        labels=labels,
    )


def _frame_size(clip: Clip) -> tuple[int, int]:
    height, width = clip.frames[0].shape[:2]
    if any(frame.shape[:2] != (height, width) for frame in clip.frames):
        raise ValueError(f"clip '{clip.video_name}': frames differ in size")
    return height, width


class ResizeLongestSideTransform(ClipTransform):
    """SAM's evaluation input: longest side resized to ``resolution`` (bilinear frames, nearest masks), bottom/right
    padded to ``resolution x resolution`` (frames with :data:`SAM_PAD_FILL`, masks with 0). No randomness; every
    object is kept (even one too small to survive the resize, so evaluation counts it).

    Returns frames ``[3, S, S]`` uint8 tensors (float32 normalised with ``normalize=True``) and masks
    ``[T, O, S, S]`` bool, as :class:`ClipTransform`. Unlike segment_anything (PIL resize with antialiasing), frames
    are resized with OpenCV's bilinear interpolation.
    """

    def __init__(self, resolution: int = 1024, normalize: bool = False) -> None:
        super().__init__([], mean=IMAGENET_MEAN, std=IMAGENET_STD, normalize=normalize)
        self.resolution = resolution

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        """Resize and pad ``clip`` (``rng`` is unused; the signature is the transforms')."""
        shape = resize_longest_side_shape(*_frame_size(clip), self.resolution)
        frames = [_place(frame, shape, (0, 0), self.resolution, SAM_PAD_FILL) for frame in clip.frames]
        masks = self._masks(clip, shape)
        return _finish(self, clip, frames, masks, None)

    def _masks(self, clip: Clip, shape: tuple[int, int]) -> np.ndarray:
        size = self.resolution
        if clip.num_objects == 0:
            return np.zeros((clip.num_frames, 0, size, size), dtype=bool)
        packed = pack_masks(np.ascontiguousarray(clip.masks, dtype=bool))
        return unpack_masks(_place_masks(packed, shape, (0, 0), size), clip.num_frames, clip.num_objects)

    def __repr__(self) -> str:
        return f"ResizeLongestSideTransform(resolution={self.resolution}, normalize={self.normalize})"


class LargeScaleJitterTransform(ClipTransform):
    """Training input for SAM: large-scale jitter, random crop/pad to ``resolution``, horizontal flip.

    Per clip (every frame moves the same way): a scale ``r`` uniform in ``scale_range``; the longest side is resized
    to ``round(r * resolution)``; a ``resolution``-sized window is cut at a uniformly random position where the
    resized image is larger, and the rest is padded bottom/right (:data:`SAM_PAD_FILL`, masks 0); then a horizontal
    flip with probability ``hflip_p``. Objects left with no pixel on any frame are dropped (with their ids and
    labels), so no target is ever empty. When a draw leaves no object at all, scale and window are drawn again, up to
    ``max_tries`` times; then :class:`DataError` names the image (``clip.video_name``).

    Returns frames ``[3, S, S]`` uint8 tensors (float32 normalised with ``normalize=True``) and masks
    ``[T, O', S, S]`` bool, ``O' <= O``.
    """

    def __init__(
        self,
        resolution: int = 1024,
        scale_range: tuple[float, float] = (0.5, 1.5),
        hflip_p: float = 0.5,
        max_tries: int = 10,
        normalize: bool = False,
    ) -> None:
        super().__init__([], mean=IMAGENET_MEAN, std=IMAGENET_STD, normalize=normalize)
        low, high = (float(v) for v in scale_range)
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range}")
        if max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries}")
        self.resolution = resolution
        self.scale_range = (low, high)
        self.hflip_p = hflip_p
        self.max_tries = max_tries

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        """Transform ``clip`` with randomness from ``rng`` (see the class docstring)."""
        height, width = _frame_size(clip)
        size = self.resolution
        if clip.num_objects == 0:
            raise DataError(clip.video_name, "image has no instance to train on")
        packed = pack_masks(np.ascontiguousarray(clip.masks, dtype=bool))
        for _ in range(self.max_tries):
            longest = max(1, round(float(rng.uniform(*self.scale_range)) * size))
            shape = resize_longest_side_shape(height, width, longest)
            offset = (
                int(rng.integers(0, max(shape[0] - size, 0) + 1)),
                int(rng.integers(0, max(shape[1] - size, 0) + 1)),
            )
            masks = unpack_masks(_place_masks(packed, shape, offset, size), clip.num_frames, clip.num_objects)
            keep = masks.any(axis=(0, 2, 3))
            if keep.any():
                break
        else:
            raise DataError(
                clip.video_name,
                f"every random crop of {self.max_tries} tries removed all {clip.num_objects} instances",
            )
        frames = [_place(frame, shape, offset, size, SAM_PAD_FILL) for frame in clip.frames]
        if rng.random() < self.hflip_p:
            frames = [np.ascontiguousarray(frame[:, ::-1]) for frame in frames]
            masks = masks[..., ::-1]
        return _finish(self, clip, frames, np.ascontiguousarray(masks), keep)

    def __repr__(self) -> str:
        return (
            f"LargeScaleJitterTransform(resolution={self.resolution}, scale_range={self.scale_range}, "
            f"hflip_p={self.hflip_p}, max_tries={self.max_tries}, normalize={self.normalize})"
        )

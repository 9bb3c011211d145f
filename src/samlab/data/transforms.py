"""Clip transforms: albumentations steps applied to every frame of a :class:`Clip`, then normalisation.

A :class:`ClipTransform` turns a numpy clip (``T`` frames ``[H, W, 3]`` uint8 RGB, masks ``[T, O, H, W]`` bool) into
the training form: frames ``[3, S, S]`` float32 torch tensors normalised with ``mean``/``std``, masks
``[T, O, S, S]`` bool **numpy** arrays (``collate_clips`` turns them into tensors).

Each :class:`ClipStep` wraps one albumentations transform. With ``consistent=True`` its random parameters are drawn
once per clip, so every frame moves the same way (camera-consistent augmentation); with ``consistent=False`` they are
drawn per frame. Masks always follow their frame's geometric parameters. Randomness comes only from the ``rng``
passed to the call, so a clip transform is deterministic given ``rng``.

Speed: frames stay uint8 until the final normalisation, which converts and lays out ``CHW`` in one table look-up per
channel. Masks travel bit-packed: object ``o`` of frame ``t`` is bit ``o % 8`` of plane ``t * C + o // 8`` of one
``[T * C, H, W]`` uint8 array, ``C = ceil(O / 8)``, so one nearest-neighbour warp or resize of a plane moves up to
eight objects at once, and exactly. That is why a step's mask interpolation must be nearest.

:func:`sam2_train_transform` is SAM 2.1's MOSE fine-tuning recipe (``sam2.1_hiera_b+_MOSE_finetune.yaml``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch

from samlab.data.sampling import Clip

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """Bit-pack ``[T, O, H, W]`` bool masks into ``[T * ceil(O / 8), H, W]`` uint8 planes (see the module docstring)."""
    num_frames, num_objects, height, width = masks.shape
    channels = -(-num_objects // 8)
    packed = np.zeros((num_frames, channels, height, width), dtype=np.uint8)
    for o in range(num_objects):
        for t in range(num_frames):
            # bits of different objects never overlap, so a saturating add is an exact bitwise or (and SIMD fast)
            cv2.scaleAdd(masks[t, o].view(np.uint8), float(1 << (o & 7)), packed[t, o >> 3], dst=packed[t, o >> 3])
    return packed.reshape(num_frames * channels, height, width)


def unpack_masks(packed: np.ndarray, num_frames: int, num_objects: int) -> np.ndarray:
    """Inverse of :func:`pack_masks`: ``[T * C, H, W]`` uint8 planes to ``[T, O, H, W]`` bool."""
    height, width = packed.shape[1:]
    planes = packed.reshape(num_frames, -1, height, width)
    out = np.empty((num_frames, num_objects, height, width), dtype=np.uint8)
    for o in range(num_objects):
        # a 256-entry table maps a packed byte to 0/1 for bit ``o``: one SIMD pass per plane, written in place
        table = ((np.arange(256) >> (o & 7)) & 1).astype(np.uint8)
        for t in range(num_frames):
            cv2.LUT(planes[t, o >> 3], table, dst=out[t, o])
    return out.view(bool)


def _present(planes: np.ndarray) -> np.ndarray:
    """Which objects show in one frame's ``[C, H, W]`` packed planes, as ``[C]`` uint8 bit sets."""
    return np.bitwise_or.reduce(planes.reshape(planes.shape[0], -1), axis=1)


class ClipStep:
    """One albumentations transform applied to all frames of a clip.

    ``transform``: any albumentations ``BasicTransform`` (its ``p`` is honoured once per clip when ``consistent``, once
    per frame otherwise); its mask interpolation, if it has one, must be nearest. ``consistent``: the same random
    parameters on every frame. ``keep_first_frame_objects``: skip the step for the whole clip when it would empty the
    first-frame mask of an object that was visible there (SAM 2's ``RandomAffine`` with ``num_tentatives=1``).
    """

    def __init__(
        self, transform: A.BasicTransform, consistent: bool = True, keep_first_frame_objects: bool = False
    ) -> None:
        interpolation = getattr(transform, "mask_interpolation", cv2.INTER_NEAREST)
        if interpolation != cv2.INTER_NEAREST:
            raise ValueError(
                f"{type(transform).__name__}: mask_interpolation must be cv2.INTER_NEAREST (masks are bit-packed), "
                f"got {interpolation}"
            )
        self.transform = transform
        self.consistent = consistent
        self.keep_first_frame_objects = keep_first_frame_objects
        self.moves_masks = "masks" in transform.targets

    def __call__(
        self, frames: list[np.ndarray], packed: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Transform ``frames`` (``T`` arrays ``[H, W, 3]`` uint8) and bit-packed masks (``[T * C, H, W]`` or None).

        Returns new frames and masks (the inputs are not modified); the frame size may change (resize, crop).
        """
        # A fresh seed per call: the transform object is shared by all clips, its randomness must come from ``rng``.
        self.transform.set_random_seed(int(rng.integers(2**32)))
        masks = packed if self.moves_masks else None
        if self.consistent:
            out_frames, out_masks = self._consistent(frames, masks)
        else:
            out_frames, out_masks = self._per_frame(frames, masks)
        if out_masks is None:
            return out_frames, packed
        if self.keep_first_frame_objects:
            channels = len(packed) // len(frames)
            if np.any(_present(packed[:channels]) & ~_present(out_masks[:channels])):
                return frames, packed
        return out_frames, out_masks

    def _consistent(
        self, frames: list[np.ndarray], masks: np.ndarray | None
    ) -> tuple[list[np.ndarray], np.ndarray | None]:
        # albumentations draws the parameters on the first frame; the other frames reuse them.
        data = {"image": frames[0]} if masks is None else {"image": frames[0], "masks": masks}
        result = self.transform(**data)
        params = self.transform.get_applied_params()
        if not params:
            return frames, masks
        rest = [self.transform.apply_with_params(params, image=frame)["image"] for frame in frames[1:]]
        return [result["image"], *rest], result.get("masks")

    def _per_frame(
        self, frames: list[np.ndarray], masks: np.ndarray | None
    ) -> tuple[list[np.ndarray], np.ndarray | None]:
        if masks is None:
            return [self.transform(image=frame)["image"] for frame in frames], None
        channels = len(masks) // len(frames)
        out_frames, out_masks = [], []
        for t, frame in enumerate(frames):
            result = self.transform(image=frame, masks=masks[t * channels : (t + 1) * channels])
            out_frames.append(result["image"])
            out_masks.append(result["masks"])
        return out_frames, np.concatenate(out_masks)

    def __repr__(self) -> str:
        return (
            f"ClipStep({self.transform!r}, consistent={self.consistent}, "
            f"keep_first_frame_objects={self.keep_first_frame_objects})"
        )


class ClipTransform:
    """Apply ``steps`` in order to a :class:`Clip`, then normalise.

    ``mean``/``std``: per-channel statistics in ``[0, 1]`` units (ImageNet's by default). Call as
    ``transform(clip, rng)``: returns a new clip whose ``frames`` are ``[3, S, S]`` float32 tensors
    ``(pixel / 255 - mean) / std`` and whose ``masks`` are ``[T, O, S, S]`` bool numpy arrays; everything else is
    kept. Frames must all have the same size, and must end the same size (use a consistent resize or crop).
    """

    def __init__(
        self,
        steps: Sequence[ClipStep],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.steps = list(steps)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        # normalised value of every uint8 level of every channel: normalisation is one table look-up per pixel.
        levels = np.arange(256, dtype=np.float64) / 255.0
        self._tables = [((levels - m) / s).astype(np.float32) for m, s in zip(self.mean, self.std, strict=True)]

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        """Transform ``clip`` with randomness from ``rng`` (see the class docstring)."""
        num_frames, num_objects = clip.num_frames, clip.num_objects
        frames = list(clip.frames)
        packed = pack_masks(np.ascontiguousarray(clip.masks, dtype=bool)) if num_objects else None
        for step in self.steps:
            frames, packed = step(frames, packed, rng)
        height, width = frames[0].shape[:2]
        if any(frame.shape[:2] != (height, width) for frame in frames):
            raise ValueError(f"clip '{clip.video_name}': frames differ in size after the transform steps")
        if packed is None:
            masks = np.zeros((num_frames, num_objects, height, width), dtype=bool)
        else:
            masks = unpack_masks(packed, num_frames, num_objects)
        return dataclasses.replace(clip, frames=self.normalize(frames), masks=masks)

    def normalize(self, frames: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """``T`` frames ``[H, W, 3]`` uint8 to ``T`` tensors ``[3, H, W]`` float32 ``(x / 255 - mean) / std``."""
        height, width = frames[0].shape[:2]
        out = np.empty((len(frames), 3, height, width), dtype=np.float32)
        for t, frame in enumerate(frames):
            for c, plane in enumerate(cv2.split(np.ascontiguousarray(frame))):
                cv2.LUT(plane, self._tables[c], dst=out[t, c])
        return list(torch.from_numpy(out))

    def __repr__(self) -> str:
        steps = "".join(f"\n    {step!r}," for step in self.steps)
        return f"{type(self).__name__}(steps=[{steps}\n], mean={self.mean}, std={self.std})"


def _jitter(strength: tuple[float, float, float]) -> A.ColorJitter:
    """SAM 2's ``ColorJitter(brightness, contrast, saturation, hue=None)``: always applied, in random order."""
    brightness, contrast, saturation = strength
    return A.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=0.0, p=1.0)


class SAM2TrainTransform(ClipTransform):
    """SAM 2.1's MOSE fine-tuning augmentation (``sam2.1_hiera_b+_MOSE_finetune.yaml``), in SAM 2's order.

    Horizontal flip (``hflip_p``, per clip); affine with rotation in ``±degrees`` and x-shear in ``±shear`` (per
    clip, bilinear image with the mean pixel as fill, nearest masks with 0 fill, skipped when it would empty an
    object's first-frame mask); square resize to ``resolution``; colour jitter ``(brightness, contrast, saturation)``
    = ``shared_jitter`` per clip; grayscale with probability ``grayscale_p`` per clip; colour jitter ``frame_jitter``
    per frame; ImageNet normalisation. Differences from SAM 2: OpenCV instead of PIL arithmetic (bilinear resize
    without antialiasing, nearest instead of thresholded-bilinear mask resize), and albumentations composes the shear
    after the rotation (torchvision before); the parameter ranges and probabilities are SAM 2's.
    """

    def __init__(
        self,
        resolution: int = 1024,
        hflip_p: float = 0.5,
        degrees: float = 25.0,
        shear: float = 20.0,
        shared_jitter: tuple[float, float, float] = (0.1, 0.03, 0.03),
        frame_jitter: tuple[float, float, float] = (0.1, 0.05, 0.05),
        grayscale_p: float = 0.05,
    ) -> None:
        # SAM 2 fills the rotated-in border with the mean pixel: its image_mean=(123, 116, 103) is 255 * mean, floored.
        fill = tuple(float(int(255 * m)) for m in IMAGENET_MEAN)
        affine = A.Affine(
            rotate=(-degrees, degrees),
            shear={"x": (-shear, shear), "y": (0.0, 0.0)},
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            border_mode=cv2.BORDER_CONSTANT,
            fill=fill,
            fill_mask=0,
            p=1.0,
        )
        steps = [
            ClipStep(A.HorizontalFlip(p=hflip_p)),
            ClipStep(affine, keep_first_frame_objects=True),
            ClipStep(A.Resize(resolution, resolution, interpolation=cv2.INTER_LINEAR, p=1.0)),
            ClipStep(_jitter(shared_jitter)),
            ClipStep(A.ToGray(num_output_channels=3, method="weighted_average", p=grayscale_p)),
            ClipStep(_jitter(frame_jitter), consistent=False),
        ]
        super().__init__(steps, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def sam2_train_transform(
    resolution: int = 1024,
    hflip_p: float = 0.5,
    degrees: float = 25.0,
    shear: float = 20.0,
    shared_jitter: tuple[float, float, float] = (0.1, 0.03, 0.03),
    frame_jitter: tuple[float, float, float] = (0.1, 0.05, 0.05),
    grayscale_p: float = 0.05,
) -> ClipTransform:
    """SAM 2.1's MOSE fine-tuning augmentation; the function form of :class:`SAM2TrainTransform` (same parameters)."""
    return SAM2TrainTransform(resolution, hflip_p, degrees, shear, shared_jitter, frame_jitter, grayscale_p)


class EvalTransform(ClipTransform):
    """Square resize to ``resolution`` (bilinear frames, nearest masks) and ImageNet normalisation; no randomness."""

    def __init__(self, resolution: int = 1024) -> None:
        super().__init__([ClipStep(A.Resize(resolution, resolution, interpolation=cv2.INTER_LINEAR, p=1.0))])

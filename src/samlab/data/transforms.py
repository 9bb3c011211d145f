"""Clip transforms: turn a numpy :class:`Clip` into the training form.

Every transform takes a clip (``T`` frames ``[H, W, 3]`` uint8 RGB, masks ``[T, O, H, W]`` bool) and returns frames
``[3, S, S]`` torch tensors and masks ``[T, O, S, S]`` bool **numpy** arrays (``collate_clips`` turns them into
tensors). Frames are float32 ``(pixel / 255 - mean) / std`` by default; with ``normalize=False`` they stay uint8, a
quarter of the bytes through the DataLoader, and :func:`normalize_images` normalises the batch later on the device.

Two kinds of transform:

* :class:`ClipTransform`, the general one: a list of :class:`ClipStep`, each wrapping one albumentations transform.
  With ``consistent=True`` a step's random parameters are drawn once per clip, so every frame moves the same way
  (camera-consistent augmentation); with ``consistent=False`` they are drawn per frame. Masks always follow their
  frame's geometric parameters. Masks travel bit-packed (see :func:`pack_masks`): one nearest-neighbour warp or resize
  of a plane moves up to eight objects at once, exactly, which is why a step's mask interpolation must be nearest.
* :class:`SAM2TrainTransform`, SAM 2.1's MOSE fine-tuning recipe fused for speed: flip, affine and resize compose
  into one 2x3 matrix, so each frame is warped once to ``S x S`` (optionally after an antialiased shrink of the axes
  that get smaller, as SAM 2's PIL resize); the colour jitters and the grayscale compose into one 3x4 matrix per
  frame, applied in one pass.

:func:`resize_antialiased` resizes as PIL does (antialiased when shrinking), the library SAM 2's training pipeline
and its video predictor resize frames with; :class:`EvalTransform` uses it by default, :class:`SAM2TrainTransform`
with ``antialias=True``. Masks are always resized with nearest neighbours.

Randomness comes only from the ``rng`` passed to the call, so every transform is deterministic given ``rng``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch

from samlab.data.sampling import Clip

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# torchvision's (and PIL's) RGB to grey weights, used by its saturation, contrast and grayscale.
GRAY_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)
# SAM 2 fills the border its affine brings in with image_mean=(123, 116, 103): 255 * the ImageNet mean, floored.
SAM2_FILL: tuple[int, int, int] = (123, 116, 103)
# The colour ops :func:`color_matrix` composes; ColorJitterParams.order indexes the first three.
COLOR_OPS: tuple[str, ...] = ("brightness", "contrast", "saturation", "grayscale")


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """Bit-pack ``[T, O, H, W]`` bool masks into ``[T * C, H, W]`` uint8 planes, ``C = ceil(O / 8)``.

    Object ``o`` of frame ``t`` is bit ``o % 8`` of plane ``t * C + o // 8``.
    """
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
    out = np.empty((num_frames, num_objects, height, width), dtype=bool)
    bits = np.empty((num_frames, height, width), dtype=np.uint8)
    for o in range(num_objects):
        # two SIMD passes over all frames at once; a 256-entry look-up table is a scalar gather, 2-3x slower
        np.bitwise_and(planes[:, o >> 3], 1 << (o & 7), out=bits)
        np.not_equal(bits, 0, out=out[:, o])
    return out


def _present(planes: np.ndarray) -> np.ndarray:
    """Which objects show in one frame's ``[C, H, W]`` mask planes (bit-packed or 0/1), as ``[C]`` uint8 bit sets."""
    return np.bitwise_or.reduce(planes.reshape(planes.shape[0], -1), axis=1)


RESIZE_FILTERS: tuple[str, ...] = ("bilinear", "bicubic")


def resize_antialiased(image: np.ndarray, size: tuple[int, int], interpolation: str = "bilinear") -> np.ndarray:
    """Resize an ``[H, W, C]`` uint8 image (``C`` = 1 to 4) to ``size`` = ``(h, w)`` as PIL's ``Image.resize`` does.

    ``interpolation``: ``"bilinear"`` (PIL's ``BILINEAR``, what SAM 2's training resize uses: torchvision's
    ``F.resize`` of a PIL image) or ``"bicubic"`` (PIL's ``BICUBIC``, the default of ``Image.resize``, what SAM 2's
    video predictor loads frames with). As PIL, the filter is widened by the scale factor along an axis that shrinks
    (antialiasing), so every input pixel contributes; along an axis that grows it is plain interpolation. Computed by
    torch's ``interpolate(..., antialias=True)`` on uint8 (PIL's algorithm, in floating point: within one grey level
    of PIL, 0.05 on average). Returns a new ``[h, w, C]`` uint8 array.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or not 1 <= image.shape[2] <= 4:
        shape = tuple(image.shape)
        raise ValueError(f"resize_antialiased expects an [H, W, C] uint8 image (C <= 4), got {image.dtype} {shape}")
    planes = _resized_planes(image, size, interpolation)
    return cv2.merge(list(planes)).reshape(*planes.shape[1:], len(planes))


def _resized_planes(image: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """:func:`resize_antialiased` of an ``[H, W, C]`` uint8 image, as ``[C, h, w]`` planes."""
    if interpolation not in RESIZE_FILTERS:
        raise ValueError(f"unknown interpolation '{interpolation}'; choose from {RESIZE_FILTERS}")
    # an NCHW view of the HWC image: channels-last, what torch's vectorised uint8 kernel wants; its output is planar,
    # and cv2.merge interleaves planes ten times faster than a numpy transpose
    batch = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    return torch.nn.functional.interpolate(batch, size=tuple(size), mode=interpolation, antialias=True)[0].numpy()


def normalize_images(
    images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """uint8 images ``[..., 3, H, W]`` to float32 ``(x / 255 - mean) / std``, on the images' device.

    ``mean``/``std``: per-channel statistics in ``[0, 1]`` units. Meant for batches of transforms built with
    ``normalize=False`` once they are on the GPU.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize_images expects uint8 images, got {images.dtype}")
    if images.ndim < 3 or images.shape[-3] != 3:
        raise ValueError(f"normalize_images expects [..., 3, H, W] images, got shape {tuple(images.shape)}")
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(3, 1, 1)
    # x * (1 / (255 std)) - mean / std: one fused multiply-add after the conversion
    return torch.addcmul(-mean_t / std_t, images.to(torch.float32), 1.0 / (255.0 * std_t))


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
    """Apply ``steps`` in order to a :class:`Clip`, then convert the frames to tensors.

    ``mean``/``std``: per-channel statistics in ``[0, 1]`` units (ImageNet's by default). ``normalize``: frames come
    out as float32 ``(pixel / 255 - mean) / std`` (True) or as uint8 (False; see :func:`normalize_images`). Call as
    ``transform(clip, rng)``: returns a new clip whose ``frames`` are ``[3, S, S]`` tensors and whose ``masks`` are
    ``[T, O, S, S]`` bool numpy arrays; everything else is kept. Frames must all have the same size, and must end the
    same size (use a consistent resize or crop).
    """

    def __init__(
        self,
        steps: Sequence[ClipStep],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        normalize: bool = True,
    ) -> None:
        self.steps = list(steps)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.normalize = normalize
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
        return dataclasses.replace(clip, frames=self.to_tensors(frames), masks=masks)

    def to_tensors(self, frames: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """``T`` frames ``[H, W, 3]`` uint8 to ``T`` tensors ``[3, H, W]``: float32 normalised, or uint8 as they are
        when ``normalize`` is False."""
        height, width = frames[0].shape[:2]
        out = self._new_frames(len(frames), height, width)
        planes = np.empty((3, height, width), dtype=np.uint8)
        for t, frame in enumerate(frames):
            self._store(np.ascontiguousarray(frame), out[t], planes)
        return list(torch.from_numpy(out))

    def _new_frames(self, num_frames: int, height: int, width: int) -> np.ndarray:
        dtype = np.float32 if self.normalize else np.uint8
        return np.empty((num_frames, 3, height, width), dtype=dtype)

    def _store(self, frame: np.ndarray, out: np.ndarray, planes: np.ndarray) -> None:
        """Write one ``[H, W, 3]`` uint8 frame into its ``[3, H, W]`` slot ``out``; ``planes``: uint8 scratch."""
        if not self.normalize:
            cv2.split(frame, list(out))
            return
        cv2.split(frame, list(planes))
        for c in range(3):
            cv2.LUT(planes[c], self._tables[c], dst=out[c])

    def __repr__(self) -> str:
        steps = "".join(f"\n    {step!r}," for step in self.steps)
        return f"{type(self).__name__}(steps=[{steps}\n], mean={self.mean}, std={self.std}, normalize={self.normalize})"


def sam2_warp_matrix(size: tuple[int, int], resolution: int, hflip: bool, angle: float, shear: float) -> np.ndarray:
    """The ``[2, 3]`` float64 map of SAM 2's geometry, from pixel ``(x, y)`` of an ``H x W`` frame to the output.

    ``size``: ``(H, W)``. The map is: horizontal flip (if ``hflip``); torchvision's ``F.affine`` about the image centre
    with rotation ``angle`` degrees (clockwise on screen) and x-shear ``shear`` degrees, shear first, no translation or
    scale, the output the input's size; square resize to ``resolution`` x ``resolution`` (half-pixel centres, as
    OpenCV, PIL and torchvision resize). Pixel centres are at integer coordinates (OpenCV's convention).
    """
    height, width = size
    flip = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) if hflip else np.eye(3)
    rot, shear_x = math.radians(angle), math.radians(shear)
    # torchvision's RotateScaleShear with y-shear 0 (_get_inverse_affine_matrix, forward form)
    rss = np.array(
        [
            [math.cos(rot), -math.cos(rot) * math.tan(shear_x) - math.sin(rot), 0.0],
            [math.sin(rot), -math.sin(rot) * math.tan(shear_x) + math.cos(rot), 0.0],
            [0.0, 0.0, 1.0],
        ]
    )
    centre = np.array([[1.0, 0.0, (width - 1) / 2], [0.0, 1.0, (height - 1) / 2], [0.0, 0.0, 1.0]])
    to_centre = np.array([[1.0, 0.0, -(width - 1) / 2], [0.0, 1.0, -(height - 1) / 2], [0.0, 0.0, 1.0]])
    resize = _resize_matrix(size, (resolution, resolution))
    return (resize @ centre @ rss @ to_centre @ flip)[:2]


def _resize_matrix(size: tuple[int, int], new_size: tuple[int, int]) -> np.ndarray:
    """The ``[3, 3]`` map of a resize from ``size`` = ``(H, W)`` to ``new_size`` (half-pixel centres, as OpenCV, PIL
    and torchvision resize), on pixel ``(x, y, 1)``."""
    sx, sy = new_size[1] / size[1], new_size[0] / size[0]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def color_matrix(ops: Sequence[tuple[str, float]], mean_rgb: Sequence[float]) -> np.ndarray:
    """The ``[3, 4]`` float32 map ``x -> A x + a`` of RGB pixels (``[0, 255]``) that applies ``ops`` in order.

    ``ops``: ``(name, factor)`` pairs, names from :data:`COLOR_OPS`, with torchvision's ``adjust_*`` meanings:
    brightness ``b x``; contrast ``c x + (1 - c) mean(grey(x))`` over the whole image; saturation
    ``s x + (1 - s) grey(x)``; grayscale ``grey(x)`` on all three channels (factor ignored); ``grey`` weighs RGB with
    :data:`GRAY_WEIGHTS`. ``mean_rgb``: the mean RGB of the image the ops start from; every op is affine, so the mean
    grey level each contrast op needs is the composed map applied to it. Unlike torchvision, nothing is clipped to
    ``[0, 255]`` between ops: the caller saturates once at the end (only near-saturated pixels differ).
    """
    gray = np.asarray(GRAY_WEIGHTS, dtype=np.float64)
    to_gray = np.outer(np.ones(3), gray)
    linear, offset = np.eye(3), np.zeros(3)
    mean = np.asarray(mean_rgb, dtype=np.float64)[:3]
    for name, factor in ops:
        if name == "brightness":
            linear, offset = factor * linear, factor * offset
        elif name == "contrast":
            mean_gray = gray @ (linear @ mean + offset)
            linear, offset = factor * linear, factor * offset + (1.0 - factor) * mean_gray
        elif name == "saturation":
            blend = factor * np.eye(3) + (1.0 - factor) * to_gray
            linear, offset = blend @ linear, blend @ offset
        elif name == "grayscale":
            linear, offset = to_gray @ linear, to_gray @ offset
        else:
            raise ValueError(f"unknown colour op '{name}'; choose from {COLOR_OPS}")
    return np.hstack([linear, offset[:, None]]).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ColorJitterParams:
    """One draw of torchvision's ``ColorJitter`` without hue: the three factors and the order they apply in.

    ``order``: a permutation of ``(0, 1, 2)`` = (brightness, contrast, saturation).
    """

    order: tuple[int, ...]
    brightness: float
    contrast: float
    saturation: float

    @classmethod
    def sample(cls, strength: tuple[float, float, float], rng: np.random.Generator) -> ColorJitterParams:
        """Draw as torchvision: a random order, each factor uniform in ``[max(0, 1 - v), 1 + v]``."""
        order = tuple(int(i) for i in rng.permutation(3))
        brightness, contrast, saturation = (float(rng.uniform(max(0.0, 1.0 - v), 1.0 + v)) for v in strength)
        return cls(order, brightness, contrast, saturation)

    def ops(self) -> list[tuple[str, float]]:
        """The jitter as :func:`color_matrix` ops, in application order."""
        factors = (self.brightness, self.contrast, self.saturation)
        return [(COLOR_OPS[i], factors[i]) for i in self.order]


@dataclasses.dataclass(frozen=True)
class SAM2AugmentParams:
    """The random draws of one :class:`SAM2TrainTransform` call.

    ``hflip``: flip all frames; ``angle``, ``shear``: degrees, see :func:`sam2_warp_matrix`; ``shared_jitter``: the
    clip's colour jitter; ``grayscale``: all frames grey; ``frame_jitter``: one colour jitter per frame.
    """

    hflip: bool
    angle: float
    shear: float
    shared_jitter: ColorJitterParams
    grayscale: bool
    frame_jitter: tuple[ColorJitterParams, ...]

    def color_ops(self, t: int) -> list[tuple[str, float]]:
        """The colour ops of frame ``t`` in SAM 2's order: shared jitter, grayscale, frame jitter."""
        gray = [("grayscale", 1.0)] if self.grayscale else []
        return [*self.shared_jitter.ops(), *gray, *self.frame_jitter[t].ops()]


def _warp_masks(
    masks: np.ndarray, matrix: np.ndarray, fallback: np.ndarray, resolution: int
) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``[T, O, H, W]`` bool masks with ``matrix`` (nearest, 0 fill) to ``[T, O, S, S]`` bool.

    First-frame rule: when ``matrix`` empties frame 0's mask of an object visible there, the whole clip is warped with
    ``fallback`` instead. Returns the masks and the matrix used.
    """
    num_frames, num_objects, height, width = masks.shape
    if num_objects == 0:
        return np.zeros((num_frames, 0, resolution, resolution), dtype=bool), matrix
    # All T * O masks bit-packed into bytes, and the bytes grouped four to a pixel of an int32 image: one nearest warp
    # copies 32 masks exactly, as fast as one uint8 warp (OpenCV's 4-channel uint8 nearest warp is 2-3x slower).
    packed = pack_masks(masks.reshape(1, num_frames * num_objects, height, width))
    planes = [*packed, *[np.zeros((height, width), dtype=np.uint8)] * (-len(packed) % 4)]
    groups = [cv2.merge(planes[i : i + 4]).view(np.int32)[..., 0] for i in range(0, len(planes), 4)]
    visible = [o for o in range(num_objects) if cv2.hasNonZero(masks[0, o].view(np.uint8))]
    warped = np.empty((len(planes), resolution, resolution), dtype=np.uint8)
    for attempt in (matrix, fallback):
        for i, group in enumerate(groups):
            image = cv2.warpAffine(group, attempt, (resolution, resolution), flags=cv2.INTER_NEAREST, borderValue=0)
            cv2.split(image[..., None].view(np.uint8), list(warped[4 * i : 4 * i + 4]))
        out = unpack_masks(warped, 1, num_frames * num_objects).reshape(num_frames, num_objects, resolution, resolution)
        if all(cv2.hasNonZero(out[0, o].view(np.uint8)) for o in visible):
            break
    return out, attempt


class SAM2TrainTransform(ClipTransform):
    """SAM 2.1's MOSE fine-tuning augmentation (``sam2.1_hiera_b+_MOSE_finetune.yaml``), fused.

    SAM 2's recipe, in its order, with its parameter distributions: horizontal flip with probability ``hflip_p`` (per
    clip); affine about the centre with rotation uniform in ``±degrees`` and x-shear uniform in ``±shear`` (per clip,
    bilinear image with :data:`SAM2_FILL` as fill, nearest masks with 0 fill, skipped for the whole clip when it would
    empty the first-frame mask of an object visible there); square resize to ``resolution``; colour jitter with
    strengths ``shared_jitter`` = (brightness, contrast, saturation) per clip; grayscale with probability
    ``grayscale_p`` per clip; colour jitter ``frame_jitter`` per frame; ImageNet normalisation (unless ``normalize``
    is False, see :class:`ClipTransform`).

    Fused: flip, affine and resize are one warp per frame (:func:`sam2_warp_matrix`) and the colour ops one 3x4 matrix
    per frame (:func:`color_matrix`). By default each frame is warped once, bilinearly, from its size on disk,
    without antialiasing (aliased where it shrinks). With ``antialias=True`` the axes of a frame that shrink (``H``
    or ``W`` > ``resolution``) are first resized to ``resolution`` as PIL resizes (:func:`resize_antialiased`,
    bilinear: SAM 2's resize of its PIL frames, within one grey level); the warp then does flip, affine and the rest
    of the resize (the axes that grow) in one bilinear pass: two interpolations, as SAM 2's affine then resize, in
    the other order. It costs about a third more transform time on 720p frames (docs/benchmarks.md), hence not the
    default. Other differences from SAM 2's step-by-step PIL/torchvision pipeline: masks are warped with nearest
    neighbours all the way (SAM 2 resizes them bilinearly and rounds); the first-frame rule is checked at the output
    resolution; colours are clipped to ``[0, 255]`` once at the end instead of after every op. ``steps`` is empty.
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
        normalize: bool = True,
        antialias: bool = False,
    ) -> None:
        super().__init__([], mean=IMAGENET_MEAN, std=IMAGENET_STD, normalize=normalize)
        self.resolution = resolution
        self.antialias = antialias
        self.hflip_p = hflip_p
        self.degrees = degrees
        self.shear = shear
        self.shared_jitter = tuple(float(v) for v in shared_jitter)
        self.frame_jitter = tuple(float(v) for v in frame_jitter)
        self.grayscale_p = grayscale_p

    def sample_params(self, num_frames: int, rng: np.random.Generator) -> SAM2AugmentParams:
        """Draw the random parameters of a clip of ``num_frames`` frames from ``rng``."""
        return SAM2AugmentParams(
            hflip=bool(rng.random() < self.hflip_p),
            angle=float(rng.uniform(-self.degrees, self.degrees)),
            shear=float(rng.uniform(-self.shear, self.shear)),
            shared_jitter=ColorJitterParams.sample(self.shared_jitter, rng),
            grayscale=bool(rng.random() < self.grayscale_p),
            frame_jitter=tuple(ColorJitterParams.sample(self.frame_jitter, rng) for _ in range(num_frames)),
        )

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        """Transform ``clip`` with parameters drawn from ``rng`` (see the class docstring)."""
        return self.apply(clip, self.sample_params(clip.num_frames, rng))

    def apply(self, clip: Clip, params: SAM2AugmentParams) -> Clip:
        """Transform ``clip`` with the given parameters; ``params.frame_jitter`` needs one entry per frame."""
        height, width = clip.frames[0].shape[:2]
        if any(frame.shape[:2] != (height, width) for frame in clip.frames):
            raise ValueError(f"clip '{clip.video_name}': frames differ in size")
        size = self.resolution
        matrix = sam2_warp_matrix((height, width), size, params.hflip, params.angle, params.shear)
        fallback = sam2_warp_matrix((height, width), size, params.hflip, 0.0, 0.0)
        masks, matrix = _warp_masks(np.ascontiguousarray(clip.masks, dtype=bool), matrix, fallback, size)
        shrunk = (min(height, size), min(width, size)) if self.antialias else (height, width)
        if shrunk != (height, width):
            # the warp starts from the shrunk frame: the same geometry, the antialiased part of the resize done
            matrix = matrix @ np.linalg.inv(_resize_matrix((height, width), shrunk))
        frames = self._new_frames(clip.num_frames, size, size)
        rgba = np.empty((*shrunk, 4), dtype=np.uint8)
        alpha = np.zeros(shrunk, dtype=np.uint8)
        warped = np.empty((size, size, 4), dtype=np.uint8)
        rgb, colored = np.empty((size, size, 3), dtype=np.uint8), np.empty((size, size, 3), dtype=np.uint8)
        planes = np.empty((3, size, size), dtype=np.uint8)
        for t, frame in enumerate(clip.frames):
            # OpenCV's bilinear warp is vectorised for 4 channels and not for 3: the two conversions cost less than
            # they save.
            if shrunk != (height, width):
                cv2.merge([*_resized_planes(frame, shrunk, "bilinear"), alpha], dst=rgba)
            else:
                cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2RGBA, dst=rgba)
            cv2.warpAffine(
                rgba,
                matrix,
                (size, size),
                dst=warped,
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=(*SAM2_FILL, 0),
            )
            cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB, dst=rgb)
            cv2.transform(rgb, color_matrix(params.color_ops(t), cv2.mean(rgb)), dst=colored)
            self._store(colored, frames[t], planes)
        return dataclasses.replace(clip, frames=list(torch.from_numpy(frames)), masks=masks)

    def __repr__(self) -> str:
        return (
            f"SAM2TrainTransform(resolution={self.resolution}, hflip_p={self.hflip_p}, degrees={self.degrees}, "
            f"shear={self.shear}, shared_jitter={self.shared_jitter}, frame_jitter={self.frame_jitter}, "
            f"grayscale_p={self.grayscale_p}, normalize={self.normalize}, antialias={self.antialias})"
        )


def _resize_masks_nearest(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[T, O, H, W]`` bool masks resized by nearest neighbour to ``size`` = ``(h, w)``, bit-packed eight at a time."""
    num_frames, num_objects = masks.shape[:2]
    if num_objects == 0:
        return np.zeros((num_frames, 0, *size), dtype=bool)
    planes = [cv2.resize(plane, size[::-1], interpolation=cv2.INTER_NEAREST) for plane in pack_masks(masks)]
    return unpack_masks(np.stack(planes), num_frames, num_objects)


class EvalTransform(ClipTransform):
    """Square resize to ``resolution`` (frames as SAM 2's video predictor, masks by nearest neighbour), then
    normalisation as :class:`ClipTransform` (``normalize``); no randomness.

    Frames: with ``antialias`` (the default) PIL's bicubic resize (:func:`resize_antialiased`), the one
    ``SAM2VideoPredictor`` loads frames with (``Image.resize``'s default), antialiased when shrinking; with
    ``antialias=False`` OpenCV's bilinear resize (cheaper, aliased when shrinking). ``resize_masks=False`` resizes
    the frames only and keeps the masks ``[T, O, H, W]`` at their size on disk: VOS scores are then computed at the
    original resolution, as the official DAVIS / SA-V evaluators do (what the data modules use for validation, test
    and prediction).
    """

    def __init__(
        self, resolution: int = 1024, normalize: bool = True, resize_masks: bool = True, antialias: bool = True
    ) -> None:
        super().__init__([], normalize=normalize)
        self.resolution = resolution
        self.resize_masks = resize_masks
        self.antialias = antialias

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        """Transform ``clip`` (see the class docstring); ``rng`` is not used."""
        size = (self.resolution, self.resolution)
        height, width = clip.frames[0].shape[:2]
        if any(frame.shape[:2] != (height, width) for frame in clip.frames):
            raise ValueError(f"clip '{clip.video_name}': frames differ in size")
        if self.antialias:
            frames = [resize_antialiased(frame, size, "bicubic") for frame in clip.frames]
        else:
            frames = [cv2.resize(frame, size[::-1], interpolation=cv2.INTER_LINEAR) for frame in clip.frames]
        masks = np.ascontiguousarray(clip.masks, dtype=bool)
        if self.resize_masks and (height, width) != size:
            masks = _resize_masks_nearest(masks, size)
        return dataclasses.replace(clip, frames=self.to_tensors(frames), masks=masks)

    def __repr__(self) -> str:
        return (
            f"EvalTransform(resolution={self.resolution}, normalize={self.normalize}, "
            f"resize_masks={self.resize_masks}, antialias={self.antialias})"
        )

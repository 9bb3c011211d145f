"""Pairs of independently augmented views of one image, with instance ids: MASA's training data.

Two views of one image (random resize and crop, random affine, flip, HSV jitter, mixup with a partner image) give
free instance correspondences: an instance keeps its annotation id in both views. Every geometric step is composed
into one affine matrix applied once to the image and to each mask, and boxes are the boxes of the transformed masks,
so they stay exact. An instance whose mask vanishes from a view (cropped out, shrunk below ``min_area`` pixels) is
dropped from that view; only ids present in both views are positives, so nothing is matched to the wrong object.
Instances of a mixup partner get negative ids, one per (partner image, annotation), shared by the two views of a
sample: the same partner object is the same id in both views, and no partner id equals an annotation id of the image.

The sources are COCO instance files (e.g. ``samlab data sa1b-to-coco`` output) or SA-1B folders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from samlab.data.datasets import SampleKey, retry_bad_samples, seeded_loader
from samlab.data.device import NormalizeOnDevice
from samlab.data.formats.base import Video
from samlab.data.sampling import read_annotated_frame
from samlab.errors import DataError
from samlab.masks import masks_to_boxes

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


@dataclass
class View:
    """One augmented view: ``image`` ``[S, S, 3]`` uint8 RGB, ``boxes`` ``[N, 4]`` float32 x1 y1 x2 y2 pixels of the
    visible instances, ``instance_ids`` ``[N]`` int64 (annotation ids; negative for mixup partner instances) and,
    when asked for, ``masks`` ``[N, S, S]`` bool."""

    image: np.ndarray
    boxes: np.ndarray
    instance_ids: np.ndarray
    masks: np.ndarray | None = None


@dataclass
class PairSample:
    """Key and reference views of the image ``name``; ``skipped`` counts bad images replaced by this one."""

    name: str
    key: View
    ref: View
    skipped: int = 0


@dataclass
class PairBatch:
    """A batch of view pairs.

    ``key_images`` / ``ref_images``: ``[B, 3, S, S]`` (uint8 from the loader, float32 normalised after the device
    transfer); ``key_boxes`` / ``ref_boxes``: ``B`` tensors ``[N_b, 4]`` float32 x1 y1 x2 y2 pixels;
    ``key_ids`` / ``ref_ids``: ``B`` tensors ``[N_b]`` int64 instance ids (same id = same object in the two views
    of one image); ``names``: the images; ``num_skipped``: bad samples replaced in this batch.
    """

    key_images: torch.Tensor
    ref_images: torch.Tensor
    key_boxes: list[torch.Tensor]
    ref_boxes: list[torch.Tensor]
    key_ids: list[torch.Tensor]
    ref_ids: list[torch.Tensor]
    names: list[str] = field(default_factory=list)
    num_skipped: int = 0


def collate_pairs(samples: Sequence[PairSample]) -> PairBatch:
    """Stack :class:`PairSample` views into a :class:`PairBatch` (images as ``[B, 3, S, S]`` uint8)."""

    def images(views: list[View]) -> torch.Tensor:
        return torch.from_numpy(np.stack([v.image for v in views])).permute(0, 3, 1, 2).contiguous()

    keys = [s.key for s in samples]
    refs = [s.ref for s in samples]
    return PairBatch(
        key_images=images(keys),
        ref_images=images(refs),
        key_boxes=[torch.from_numpy(v.boxes) for v in keys],
        ref_boxes=[torch.from_numpy(v.boxes) for v in refs],
        key_ids=[torch.from_numpy(v.instance_ids) for v in keys],
        ref_ids=[torch.from_numpy(v.instance_ids) for v in refs],
        names=[s.name for s in samples],
        num_skipped=sum(s.skipped for s in samples),
    )


class PairDataset(Dataset):
    """Pairs of augmented views of the images of a reader (COCO or SA-1B, any ``Sequence[Video]`` of images).

    Args:
        images: the images (one-frame videos); objects are their annotations.
        image_size: side ``S`` of the square views.
        augment: the augmentation of each view; None gives views that are only resized to fit (no randomness).
        max_instances: annotations kept per image (chosen at random when there are more); None keeps all.
        min_area: smallest visible mask area in pixels for an instance to stay in a view.
        seed: base seed; sample ``(index, epoch, rank)`` draws from ``(seed, epoch, rank, worker, index, attempt)``.
        repeat: times each image is visited per epoch.
        skip_bad_samples: replace an image that raises :class:`DataError` (logged, counted in ``skipped``) instead
            of raising.
        return_masks: also give each view's ``[N, S, S]`` masks (for inspection and tests).
        fixed: draw sample ``i`` from ``(seed, i)`` alone, the same in every epoch, rank and worker (validation).

    An image without any instance left in both views raises :class:`DataError` (or is skipped): it has nothing to
    learn from.
    """

    def __init__(
        self,
        images: Sequence[Video],
        image_size: int,
        augment: PairAugment | None = None,
        max_instances: int | None = 64,
        min_area: int = 4,
        seed: int = 0,
        repeat: int = 1,
        skip_bad_samples: bool = False,
        max_skip_retries: int = 20,
        return_masks: bool = False,
        fixed: bool = False,
    ) -> None:
        if len(images) == 0:
            raise ValueError("PairDataset got a reader with no images")
        self.images = images
        self.image_size = image_size
        self.augment = augment
        self.max_instances = max_instances
        self.min_area = min_area
        self.seed = seed
        self.repeat = repeat
        self.skip_bad_samples = skip_bad_samples
        self.max_skip_retries = max_skip_retries
        self.return_masks = return_masks
        self.fixed = fixed

    def __len__(self) -> int:
        return len(self.images) * self.repeat

    def _read(self, index: int, rng: np.random.Generator, limit: int | None) -> tuple[np.ndarray, np.ndarray, list]:
        video = self.images[index % len(self.images)]
        image, frame_masks = read_annotated_frame(video, 0)
        ids = frame_masks.ids()
        if limit is not None and len(ids) > limit:
            ids = sorted(int(i) for i in rng.choice(ids, size=limit, replace=False))
        return image, frame_masks.decode(ids), ids

    def _view(
        self, image: np.ndarray, masks: np.ndarray, ids: np.ndarray, rng: np.random.Generator, partner: tuple | None
    ) -> View:
        size = self.image_size
        height, width = image.shape[:2]
        if self.augment is None:
            fit = size / max(height, width)
            matrix = np.array([[fit, 0.0, 0.0], [0.0, fit, 0.0]])
        else:
            matrix = self.augment.matrix(height, width, size, rng)
        out, out_masks = warp_view(image, masks, matrix, size)
        if partner is not None:
            p_image, p_masks, p_ids = partner
            p_out, p_out_masks = warp_view(p_image, p_masks, self.augment.matrix(*p_image.shape[:2], size, rng), size)
            alpha = self.augment.mixup_alpha
            out = cv2.addWeighted(out, 1.0 - alpha, p_out, alpha, 0.0)
            out_masks = np.concatenate([out_masks, p_out_masks])
            ids = np.concatenate([ids, p_ids])
        if self.augment is not None:
            out = self.augment.jitter_hsv(out, rng)
        keep = out_masks.reshape(len(out_masks), -1).sum(axis=1) >= self.min_area
        out_masks = out_masks[keep]
        return View(
            image=np.ascontiguousarray(out),
            boxes=masks_to_boxes(out_masks).astype(np.float32).reshape(-1, 4),
            instance_ids=ids[keep].astype(np.int64),
            masks=out_masks if self.return_masks else None,
        )

    def load(self, index: int, rng: np.random.Generator) -> PairSample:
        """Read image ``index`` and make its two views with ``rng`` (raises :class:`DataError`)."""
        image, masks, ids = self._read(index, rng, self.max_instances)
        video = self.images[index % len(self.images)]
        if not ids:
            raise DataError(video.source, f"image '{video.name}' has no instance")
        ids_array = np.asarray(ids, dtype=np.int64)
        partner_ids: dict[tuple[int, int], int] = {}
        views = []
        for _ in range(2):
            partner = None
            if self.augment is not None and len(self.images) > 1 and rng.random() < self.augment.mixup_prob:
                other = (index % len(self.images) + int(rng.integers(1, len(self.images)))) % len(self.images)
                p_image, p_masks, p_ids = self._read(other, rng, self.max_instances)
                # One negative id per (partner image, annotation), shared by the two views of this sample.
                keyed = [partner_ids.setdefault((other, int(i)), -1 - len(partner_ids)) for i in p_ids]
                partner = (p_image, p_masks, np.asarray(keyed, dtype=np.int64))
            views.append(self._view(image, masks, ids_array, rng, partner))
        key, ref = views
        if not np.isin(key.instance_ids, ref.instance_ids).any():
            raise DataError(video.source, f"image '{video.name}': no instance is visible in both augmented views")
        return PairSample(name=video.name, key=key, ref=ref)

    def _rng(self, index: int, epoch: int, rank: int, attempt: int) -> np.random.Generator:
        if self.fixed:
            return np.random.default_rng([self.seed, index, attempt])
        info = get_worker_info()
        worker = info.id if info is not None else 0
        return np.random.default_rng([self.seed, epoch, rank, worker, index, attempt])

    def __getitem__(self, key: int | SampleKey) -> PairSample:
        index, epoch, rank = (key, 0, 0) if isinstance(key, int) else key
        if not self.skip_bad_samples:
            return self.load(index, self._rng(index, epoch, rank, 0))
        sample, skipped = retry_bad_samples(
            self.load, index, lambda attempt: self._rng(index, epoch, rank, attempt), len(self), self.max_skip_retries
        )
        sample.skipped = skipped
        return sample


class MASAPairDataModule(NormalizeOnDevice, L.LightningDataModule):
    """Pairs of augmented views for MASA training, from a COCO instances file or an SA-1B folder.

    Args:
        image_size: side of the square views (linked to the model's by the CLI).
        ann_file / image_root: COCO instances JSON (e.g. ``<prefix>_mask_anno.json`` of ``samlab data sa1b-to-coco``)
            and its image folder (default: the JSON's folder).
        sa1b_root / sa1b_file_list: an SA-1B folder (and optional subset list) instead of a COCO file.
        val_ann_file / val_image_root / val_sa1b_root / val_sa1b_file_list: held-out images; their views are drawn
            with a fixed seed per image and without mixup, so validation scores are comparable across epochs.
        batch_size / val_batch_size: pairs per batch.
        num_workers: DataLoader workers.
        seed: base seed of the augmentations and of the sampler's shuffling.
        max_instances: annotations kept per image.
        min_area: smallest visible area (pixels) for an instance to stay in a view.
        repeat: visits of each training image per epoch.
        skip_bad_samples: replace (and count) bad images instead of raising.
        augment: :class:`PairAugment` fields (None: its defaults).
    """

    batch_type = PairBatch
    image_fields = ("key_images", "ref_images")

    def __init__(
        self,
        image_size: int = 1024,
        ann_file: str | None = None,
        image_root: str | None = None,
        sa1b_root: str | None = None,
        sa1b_file_list: str | None = None,
        val_ann_file: str | None = None,
        val_image_root: str | None = None,
        val_sa1b_root: str | None = None,
        val_sa1b_file_list: str | None = None,
        batch_size: int = 2,
        val_batch_size: int = 2,
        num_workers: int = 0,
        seed: int = 0,
        max_instances: int | None = 64,
        min_area: int = 4,
        repeat: int = 1,
        skip_bad_samples: bool = False,
        augment: dict | None = None,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.sources = {
            "train": (ann_file, image_root, sa1b_root, sa1b_file_list),
            "val": (val_ann_file, val_image_root, val_sa1b_root, val_sa1b_file_list),
        }
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.max_instances = max_instances
        self.min_area = min_area
        self.repeat = repeat
        self.skip_bad_samples = skip_bad_samples
        self.augment = PairAugment(**(augment or {}))
        self.datasets: dict[str, PairDataset] = {}

    def reader(self, split: str) -> Sequence[Video] | None:
        """The images of ``split`` ("train" or "val"), or None when the split has no data."""
        ann_file, image_root, sa1b_root, sa1b_file_list = self.sources[split]
        if ann_file is not None and sa1b_root is not None:
            raise ValueError(f"MASAPairDataModule {split}: give a COCO ann_file or an SA-1B root, not both")
        if ann_file is not None:
            from samlab.data.formats.coco import COCOReader

            return COCOReader(ann_file, image_root or Path(ann_file).parent)
        if sa1b_root is not None:
            from samlab.data.formats.sa1b import SA1BReader

            return SA1BReader(sa1b_root, file_list=sa1b_file_list)
        return None

    def dataset(self, split: str) -> PairDataset | None:
        """The :class:`PairDataset` of ``split`` (built once), or None when the split has no data."""
        if split not in self.datasets:
            images = self.reader(split)
            if images is None:
                return None
            training = split == "train"
            augment = self.augment if training else PairAugment(**{**vars(self.augment), "mixup_prob": 0.0})
            self.datasets[split] = PairDataset(
                images,
                self.image_size,
                augment=augment,
                max_instances=self.max_instances,
                min_area=self.min_area,
                seed=self.seed,
                repeat=self.repeat if training else 1,
                skip_bad_samples=self.skip_bad_samples,
                fixed=not training,
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val") if stage in (None, "fit") else ("val",):
            self.dataset(split)

    def loader(self, split: str) -> DataLoader:
        """A DataLoader of :class:`PairBatch` over ``split``; DDP-aware through :class:`SeededSampler`."""
        dataset = self.dataset(split)
        if dataset is None:
            raise ValueError(f"MASAPairDataModule has no '{split}' data: set its ann_file or sa1b_root in the config")
        training = split == "train"
        batch_size = self.batch_size if training else self.val_batch_size
        return seeded_loader(dataset, batch_size, training, collate_pairs, self.trainer, self.seed, self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader | list:
        return self.loader("val") if self.dataset("val") is not None else []

"""Boundary data for DirectSAM: images with their class-agnostic boundary map, from readers or pseudo-label JSONs.

Two kinds of source:

* a foundation reader (SA-1B, COCO, MOSE/DAVIS frames, opened by :func:`samlab.tools.inspection.open_reader`):
  every annotated frame is an item; its masks are resized to ``image_size`` and turned into a boundary with
  :func:`samlab.data.boundaries.boundary_target` (``thickness``). Prediction items also carry the *human boundary*
  at the original size (``human_thickness``, RLE) for the stage-2 pseudo-label JSON.
* a folder of stage-2 pseudo-label JSONs (:mod:`samlab.models.directsam.writers`): the target is the pseudo-label
  OR the human boundary; each folder is split 99/1 into train/val (``val_fraction``) by a hash of the file name, so
  the split is deterministic and a file keeps its side when files are added (:func:`split_pseudo_labels`).

Images are resized to ``image_size`` squared (as DirectSAM). Training images get light augmentation (Gaussian blur,
colour jitter and grayscale, each with probability ``augment_prob``, on the image only) and a horizontal flip (image
and target). Randomness comes from ``(seed, epoch, rank, worker, index)`` through :class:`SeededSampler`.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from samlab.data.boundaries import boundary_target, resize_boundary, resize_masks
from samlab.data.datasets import retry_bad_samples, seeded_loader
from samlab.data.device import NormalizeOnDevice
from samlab.data.formats.base import VideoReader, read_image
from samlab.errors import DataError
from samlab.masks import RLE, decode_rle, encode_rle


@dataclass
class BoundarySample:
    """One item: ``image`` ``[3, S, S]`` uint8, ``target`` ``[S, S]`` float32 in {0, 1}, ``name`` (unique within
    its source), ``image_path``, ``orig_size`` (H, W), ``source`` (dataset folder) and, for prediction,
    ``human_boundary`` (RLE at the original size, or None)."""

    image: torch.Tensor
    target: torch.Tensor
    name: str
    image_path: str
    orig_size: tuple[int, int]
    source: str
    human_boundary: RLE | None = None


@dataclass
class BoundaryBatch:
    """Collated :class:`BoundarySample`: ``images`` ``[B, 3, S, S]`` (uint8, float32 normalised once on the device),
    ``targets`` ``[B, S, S]`` float32, ``orig_sizes`` ``[B, 2]`` int64, per-sample lists ``names``, ``image_paths``,
    ``sources``, ``human_boundaries``, and ``num_skipped`` (bad samples replaced in this batch)."""

    images: torch.Tensor
    targets: torch.Tensor
    orig_sizes: torch.Tensor
    names: list[str]
    image_paths: list[str]
    sources: list[str]
    human_boundaries: list[RLE | None]
    num_skipped: int = 0


def collate_boundaries(items: Sequence[BoundarySample | tuple[BoundarySample, int]]) -> BoundaryBatch:
    """Stack :class:`BoundarySample` items (or ``(sample, skipped)`` pairs) into a :class:`BoundaryBatch`."""
    samples = [item[0] if isinstance(item, tuple) else item for item in items]
    skipped = sum(item[1] for item in items if isinstance(item, tuple))
    return BoundaryBatch(
        images=torch.stack([s.image for s in samples]),
        targets=torch.stack([s.target for s in samples]),
        orig_sizes=torch.tensor([s.orig_size for s in samples], dtype=torch.int64),
        names=[s.name for s in samples],
        image_paths=[s.image_path for s in samples],
        sources=[s.source for s in samples],
        human_boundaries=[s.human_boundary for s in samples],
        num_skipped=skipped,
    )


class BoundaryAugment:
    """DirectSAM's light augmentation at probability ``p`` each: Gaussian blur, colour jitter, grayscale (image only);
    then a horizontal flip with probability ``flip_prob`` (image and target). Randomness only from ``rng``."""

    def __init__(self, p: float = 0.25, flip_prob: float = 0.5) -> None:
        self.flip_prob = flip_prob
        self.color = A.Compose(
            [
                A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.1, 2.0), p=p),
                A.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.5, p=p),
                A.ToGray(p=p),
            ]
        )

    def __call__(
        self, image: np.ndarray, target: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``[S, S, 3]`` uint8 image and ``[S, S]`` bool target -> augmented copies."""
        # A fresh seed per call: the transform is shared by all samples, its randomness must come from ``rng``.
        self.color.set_random_seed(int(rng.integers(2**32)))
        image = self.color(image=image)["image"]
        if rng.random() < self.flip_prob:
            image, target = image[:, ::-1], target[:, ::-1]
        return np.ascontiguousarray(image), np.ascontiguousarray(target)


class BoundaryDataset(Dataset):
    """Base of the boundary datasets: seeding, augmentation, resizing and bad-sample skipping.

    Subclasses implement :meth:`__len__`, :meth:`name` and :meth:`read` (``index -> (image [H, W, 3] uint8,
    target [S, S] bool, image_path, human_boundary)``). Items are :class:`BoundarySample`, or ``(sample, skipped)``
    with ``skip_bad_samples`` (a bad sample is logged and replaced by a random other one).
    """

    def __init__(
        self,
        source: str,
        image_size: int,
        augment: BoundaryAugment | None = None,
        seed: int = 0,
        skip_bad_samples: bool = False,
        max_skip_retries: int = 20,
    ) -> None:
        self.source = source
        self.image_size = image_size
        self.augment = augment
        self.seed = seed
        self.skip_bad_samples = skip_bad_samples
        self.max_skip_retries = max_skip_retries

    def __len__(self) -> int:
        raise NotImplementedError

    def name(self, index: int) -> str:
        """The item's name, unique within the source (its pseudo-label JSON is ``<name>.json``)."""
        raise NotImplementedError

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str, RLE | None]:
        """The item's original image, its ``[S, S]`` bool target, image path and human boundary RLE (or None)."""
        raise NotImplementedError

    def load(self, index: int, rng: np.random.Generator) -> BoundarySample:
        """Read, resize and (when training) augment item ``index`` (raises :class:`DataError`)."""
        image, target, image_path, human = self.read(index)
        orig_size = (int(image.shape[0]), int(image.shape[1]))
        size = self.image_size
        image = cv2.resize(
            image, (size, size), interpolation=cv2.INTER_AREA if max(orig_size) > size else cv2.INTER_LINEAR
        )
        if self.augment is not None:
            image, target = self.augment(image, target, rng)
        return BoundarySample(
            image=torch.from_numpy(image).permute(2, 0, 1).contiguous(),
            target=torch.from_numpy(target.astype(np.float32)),
            name=self.name(index),
            image_path=image_path,
            orig_size=orig_size,
            source=self.source,
            human_boundary=human,
        )

    def __getitem__(self, key: int | tuple[int, int, int]) -> BoundarySample | tuple[BoundarySample, int]:
        index, epoch, rank = (key, 0, 0) if isinstance(key, int) else key
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if not self.skip_bad_samples:
            return self.load(index, np.random.default_rng([self.seed, epoch, rank, worker, index]))
        return retry_bad_samples(
            self.load,
            index,
            lambda attempt: np.random.default_rng([self.seed, epoch, rank, worker, index, attempt]),
            len(self),
            self.max_skip_retries,
            self.source,
        )


class ReaderBoundaryDataset(BoundaryDataset):
    """Every annotated frame of a foundation reader, with the boundary of its masks as target.

    ``thickness``: target kernel at ``image_size``; ``human_thickness``: kernel of the human boundary kept at the
    original size (computed only with ``with_human_boundary``, for prediction). Other arguments:
    :class:`BoundaryDataset`. An image without masks, or whose masks differ in size from it, raises
    :class:`DataError` naming the file.
    """

    def __init__(
        self,
        reader: VideoReader,
        image_size: int,
        thickness: int = 3,
        human_thickness: int = 9,
        with_human_boundary: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(str(reader.root), image_size, **kwargs)
        self.reader = reader
        self.thickness = thickness
        self.human_thickness = human_thickness
        self.with_human_boundary = with_human_boundary
        # Images are one-frame videos; videos (MOSE) give one item per annotated frame.
        counts = np.array([reader[i].num_frames for i in range(len(reader))], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.keep = np.arange(int(self.offsets[-1]))

    def __len__(self) -> int:
        return len(self.keep)

    def _locate(self, item: int) -> tuple[int, int]:
        """``(video index, annotated frame k)`` of item ``item`` of the full (unfiltered) frame list."""
        video = int(np.searchsorted(self.offsets, item, side="right")) - 1
        return video, item - int(self.offsets[video])

    def _item_name(self, item: int) -> str:
        video_index, k = self._locate(item)
        video = self.reader[video_index]
        return video.name if video.num_frames == 1 else f"{video.name}/{video.frame_path(k).stem}"

    def name(self, index: int) -> str:
        return self._item_name(int(self.keep[index]))

    def exclude(self, done: set[str]) -> None:
        """Leave out the items whose :meth:`name` is in ``done`` (already pseudo-labelled: resuming stage 2)."""
        self.keep = np.array([i for i in self.keep if self._item_name(int(i)) not in done], dtype=np.int64)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str, RLE | None]:
        video_index, k = self._locate(int(self.keep[index]))
        video = self.reader[video_index]
        frame_path = video.frame_path(k)
        image = video.read_frame(k)
        frame_masks = video.masks(k)
        ids = frame_masks.ids()
        if not ids:
            raise DataError(frame_masks.source, f"image {frame_path.name} has no masks: its boundary would be empty")
        masks = frame_masks.decode(ids)
        if masks.shape[1:] != image.shape[:2]:
            raise DataError(
                frame_masks.source,
                f"masks are {masks.shape[2]}x{masks.shape[1]} (WxH) but image {frame_path.name} is "
                f"{image.shape[1]}x{image.shape[0]}",
            )
        size = (self.image_size, self.image_size)
        target = boundary_target(resize_masks(masks, size), self.thickness)
        human = encode_rle(boundary_target(masks, self.human_thickness)) if self.with_human_boundary else None
        return image, target, str(frame_path), human


def _read_pseudo_label(path: Path) -> dict:
    """A stage-2 JSON, checked: readable, with ``image``, ``height``, ``width`` and a ``pseudo_label`` RLE."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(path, f"unreadable pseudo-label JSON ({err})") from None
    missing = [key for key in ("image", "height", "width", "pseudo_label") if key not in record]
    if not isinstance(record, dict) or missing:
        raise DataError(path, f"pseudo-label JSON lacks {', '.join(missing) or 'an object'}")
    return record


class PseudoLabelDataset(BoundaryDataset):
    """Stage-2 pseudo-label JSONs ``files`` of one folder ``source``: target = pseudo-label OR human boundary.

    A relative ``image`` path is taken from the JSON's folder. Unreadable JSON, a label whose size differs from
    ``height``/``width``, or an image of another size raise :class:`DataError` naming the file.
    """

    def __init__(self, source: str, files: Sequence[Path], image_size: int, **kwargs) -> None:
        super().__init__(source, image_size, **kwargs)
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def name(self, index: int) -> str:
        return str(self.files[index].relative_to(self.source).with_suffix(""))

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str, RLE | None]:
        path = self.files[index]
        record = _read_pseudo_label(path)
        size = (int(record["height"]), int(record["width"]))
        labels = [record["pseudo_label"]] + ([record["human_boundary"]] if record.get("human_boundary") else [])
        merged = np.zeros(size, dtype=bool)
        for rle in labels:
            try:
                mask = decode_rle(rle)
            except (ValueError, TypeError, KeyError) as err:
                raise DataError(path, f"corrupt RLE ({err})") from None
            if mask.shape != size:
                raise DataError(path, f"label is {mask.shape[1]}x{mask.shape[0]} but the image is {size[1]}x{size[0]}")
            merged |= mask
        image_path = path.parent / record["image"]
        image = read_image(image_path)
        if image.shape[:2] != size:
            raise DataError(path, f"image {image_path} is {image.shape[1]}x{image.shape[0]}, not {size[1]}x{size[0]}")
        return image, resize_boundary(merged, (self.image_size, self.image_size)), str(image_path), None


def split_pseudo_labels(folder: str | Path, val_fraction: float = 0.01) -> tuple[list[Path], list[Path]]:
    """``(train, val)`` JSON files of a pseudo-label folder (recursive, sorted).

    A file is validation when the CRC32 hash of its relative name, over 2**32, is below ``val_fraction``: the split
    is deterministic and a file never changes side when others are added. A folder of two or more files whose hashes
    give no validation file gets the one with the smallest hash.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "pseudo-label folder does not exist")
    files = sorted(folder.rglob("*.json"))
    if not files:
        raise DataError(folder, "no pseudo-label JSON in this folder")
    hashes = {p: zlib.crc32(str(p.relative_to(folder)).encode()) for p in files}
    val = {p for p in files if hashes[p] < val_fraction * 2**32}
    if not val and len(files) >= 2:
        val = {min(files, key=lambda p: (hashes[p], str(p)))}
    return [p for p in files if p not in val], [p for p in files if p in val]


class ConcatBoundaryDataset(Dataset):
    """Several boundary datasets as one (stage 3: every pseudo-label folder), keyed like :class:`BoundaryDataset`."""

    def __init__(self, datasets: Sequence[BoundaryDataset]) -> None:
        self.datasets = [d for d in datasets if len(d) > 0]
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: int | tuple[int, int, int]) -> BoundarySample | tuple[BoundarySample, int]:
        index, epoch, rank = (key, 0, 0) if isinstance(key, int) else key
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.datasets[part][(index - int(self.offsets[part]), epoch, rank)]


class BoundaryDataModule(NormalizeOnDevice, L.LightningDataModule):
    """DirectSAM's three stages of data.

    Args:
        image_size: square side images and targets are resized to (linked to the model's).
        format: format of ``root``/``val_root``/``predict_root`` (``sa1b``, ``coco``, ``mose``).
        root: training dataset (stage 1) — or None when training on ``pseudo_label_roots``.
        val_root: held-out dataset of ``format``.
        predict_root: dataset to pseudo-label (stage 2).
        pseudo_label_roots: folders of stage-2 JSONs (stage 3); each is split train/val by ``val_fraction``.
        val_fraction: validation share of each pseudo-label folder (DirectSAM: 1%).
        thickness: boundary kernel diameter of the targets, at ``image_size``.
        human_thickness: boundary kernel diameter of the human boundary written at stage 2, at the original size.
        batch_size / val_batch_size: samples per batch (val defaults to ``batch_size``).
        num_workers: DataLoader workers.
        seed: base seed; samples are seeded by (seed, epoch, rank, worker, index).
        augment_prob: probability of each of blur, colour jitter and grayscale at training (0 turns them off).
        flip_prob: horizontal flip probability at training.
        skip_bad_samples: skip (and log, and count in ``BoundaryBatch.num_skipped``) bad training samples.
    """

    batch_type = BoundaryBatch

    def __init__(
        self,
        image_size: int = 1024,
        format: str = "sa1b",
        root: str | None = None,
        val_root: str | None = None,
        predict_root: str | None = None,
        pseudo_label_roots: list[str] | None = None,
        val_fraction: float = 0.01,
        thickness: int = 3,
        human_thickness: int = 9,
        batch_size: int = 2,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        augment_prob: float = 0.25,
        flip_prob: float = 0.5,
        skip_bad_samples: bool = False,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.format = format
        self.roots = {"train": root, "val": val_root, "predict": predict_root}
        self.pseudo_label_roots = list(pseudo_label_roots or [])
        self.val_fraction = val_fraction
        self.thickness = thickness
        self.human_thickness = human_thickness
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.augment_prob = augment_prob
        self.flip_prob = flip_prob
        self.skip_bad_samples = skip_bad_samples
        self.datasets: dict[str, Dataset | None] = {}

    def _reader_dataset(self, split: str) -> ReaderBoundaryDataset | None:
        from samlab.tools.inspection import open_reader

        root = self.roots[split]
        if root is None:
            return None
        training = split == "train"
        return ReaderBoundaryDataset(
            open_reader(self.format, root),
            self.image_size,
            thickness=self.thickness,
            human_thickness=self.human_thickness,
            with_human_boundary=split == "predict",
            augment=BoundaryAugment(self.augment_prob, self.flip_prob) if training else None,
            seed=self.seed,
            skip_bad_samples=self.skip_bad_samples and training,
        )

    def _pseudo_label_dataset(self, split: str) -> ConcatBoundaryDataset | None:
        if not self.pseudo_label_roots or split not in ("train", "val"):
            return None
        training = split == "train"
        parts = []
        for folder in self.pseudo_label_roots:
            train, val = split_pseudo_labels(folder, self.val_fraction)
            parts.append(
                PseudoLabelDataset(
                    str(Path(folder)),
                    train if training else val,
                    self.image_size,
                    augment=BoundaryAugment(self.augment_prob, self.flip_prob) if training else None,
                    seed=self.seed,
                    skip_bad_samples=self.skip_bad_samples and training,
                )
            )
        return ConcatBoundaryDataset(parts)

    def dataset(self, split: str) -> Dataset | None:
        """The dataset of ``split`` ("train", "val", "predict"; "test" is "val"), built once; None without data."""
        split = "val" if split == "test" else split
        if split not in self.datasets:
            dataset: Dataset | None = self._reader_dataset(split)
            if self.pseudo_label_roots and split in ("train", "val"):
                dataset = self._pseudo_label_dataset(split)
            self.datasets[split] = dataset
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("val",), "predict": ("predict",)}
        for split in splits.get(stage or "fit", ("train", "val")):
            self.dataset(split)

    def loader(self, split: str) -> DataLoader:
        """A DataLoader of :class:`BoundaryBatch` over ``split``, DDP-aware through :class:`SeededSampler`."""
        dataset = self.dataset(split)
        if dataset is None:
            raise ValueError(f"BoundaryDataModule has no '{split}' data: set its root in the config")
        training = split == "train"
        batch_size = self.batch_size if training else self.val_batch_size
        return seeded_loader(
            dataset, batch_size, training, collate_boundaries, self.trainer, self.seed, self.num_workers
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader | list:
        return self.loader("val") if self.dataset("val") is not None else []

    def test_dataloader(self) -> DataLoader:
        return self.loader("val")

    def predict_dataloader(self) -> DataLoader:
        return self.loader("predict")

"""Boundary datasets for DirectSAM: images with their class-agnostic boundary map, from readers or pseudo-labels.

Two kinds of source:

* a foundation reader (SA-1B, COCO, MOSE/DAVIS frames, opened by :func:`samlab.tools.inspection.open_reader`):
  every annotated frame is an item; its masks are resized (nearest) to ``image_size`` and turned into a boundary
  with :func:`samlab.data.boundaries.targets.boundary_target` (``thickness``), as DirectSAM draws its targets at the
  model resolution.
* a folder of images and label-map PNGs (:class:`LabelMapBoundaryDataset`, DirectSAM's ``FoldersDataset``):
  the label map is resized (nearest) to ``image_size`` and every value, 0 included, outlined
  (:func:`samlab.data.boundaries.targets.label_map_target`), equal to DirectSAM's targets pixel for pixel.
* a folder of pseudo-label JSONs in DirectSAM's layout (:func:`pseudo_label_record`, written by
  :class:`samlab.models.directsam.writers.PseudoLabelWriter` or by DirectSAM's ``pseudo_labeling.py``): the target
  is the pseudo-label, the human label or their OR (``label``), resized (nearest) to ``image_size``. Each folder is
  split 99/1 into train/val (:func:`split_pseudo_labels`).

Images are resized to ``image_size`` squared with PIL's bicubic filter and, for training, augmented by
:class:`samlab.data.boundaries.augment.BoundaryAugment`. Randomness comes from ``(seed, epoch, rank, worker,
index)`` through :class:`samlab.data.datasets.SeededSampler`.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from samlab.data.boundaries.augment import BoundaryAugment, resize_image
from samlab.data.boundaries.batch import BoundarySample
from samlab.data.boundaries.targets import boundary_target, label_map_target, resize_masks
from samlab.data.datasets import retry_bad_samples
from samlab.data.formats.base import VideoReader, read_image
from samlab.errors import DataError, with_skip_hint
from samlab.masks import RLE, decode_rle

PSEUDO_LABEL_CHOICES: tuple[str, ...] = ("merged", "pseudo", "human")


class BoundaryDataset(Dataset):
    """Base of the boundary datasets: seeding, image resizing, augmentation and bad-sample skipping.

    Subclasses implement :meth:`__len__`, :meth:`name` and :meth:`read` (``index -> (image [H, W, 3] uint8,
    target [S, S] bool, image_path)``). Items are :class:`BoundarySample`, or ``(sample, skipped)`` with
    ``skip_bad_samples`` (a bad sample is logged and replaced by a random other one).
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

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        """The item's original image, its ``[S, S]`` bool target and its image path."""
        raise NotImplementedError

    def load(self, index: int, rng: np.random.Generator) -> BoundarySample:
        """Read, resize and (when training) augment item ``index`` (raises :class:`DataError`)."""
        image, target, image_path = self.read(index)
        orig_size = (int(image.shape[0]), int(image.shape[1]))
        image = resize_image(image, self.image_size)
        if self.augment is not None:
            image, target = self.augment(image, target, rng)
        return BoundarySample(
            image=torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous(),
            target=torch.from_numpy(target.astype(np.float32)),
            name=self.name(index),
            image_path=image_path,
            orig_size=orig_size,
            source=self.source,
        )

    def __getitem__(self, key: int | tuple[int, int, int]) -> BoundarySample | tuple[BoundarySample, int]:
        index, epoch, rank = (key, 0, 0) if isinstance(key, int) else key
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if not self.skip_bad_samples:
            try:
                return self.load(index, np.random.default_rng([self.seed, epoch, rank, worker, index]))
            except DataError as err:
                raise with_skip_hint(err) from None
        return retry_bad_samples(
            self.load,
            index,
            lambda attempt: np.random.default_rng([self.seed, epoch, rank, worker, index, attempt]),
            len(self),
            self.max_skip_retries,
            self.source,
        )


class ReaderBoundaryDataset(BoundaryDataset):
    """Every annotated frame of a foundation reader, with the boundary of its masks (drawn at ``image_size``,
    kernel ``thickness``) as target. Other arguments: :class:`BoundaryDataset`. An image without masks, or whose
    masks differ in size from it, raises :class:`DataError` naming the file.
    """

    def __init__(self, reader: VideoReader, image_size: int, thickness: int = 3, **kwargs) -> None:
        super().__init__(str(reader.root), image_size, **kwargs)
        self.reader = reader
        self.thickness = thickness
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

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
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
        target = boundary_target(resize_masks(masks, (self.image_size, self.image_size)), self.thickness)
        return image, target, str(frame_path)


class LabelMapBoundaryDataset(BoundaryDataset):
    """Images ``<root>/<image_dir>/<stem>.<image_suffix>`` with label maps ``<root>/<label_dir>/<stem>.png``
    (semantic, instance or panoptic ids; palette PNGs give their indices; of an RGB PNG the first channel, as
    DirectSAM's ``single_channel`` mode). Images without a label map are left out, as DirectSAM's
    ``FoldersDataset`` does. Target: :func:`~samlab.data.boundaries.targets.label_map_target` (``thickness``).
    Other arguments: :class:`BoundaryDataset`. No pairs, or a label map whose size differs from its image's,
    raise :class:`DataError` naming the folder or file.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int,
        thickness: int = 3,
        image_dir: str = "images",
        label_dir: str = "labels",
        image_suffix: str = "jpg",
        **kwargs,
    ) -> None:
        root = Path(root)
        super().__init__(str(root), image_size, **kwargs)
        self.thickness = thickness
        images, labels = root / image_dir, root / label_dir
        for folder in (images, labels):
            if not folder.is_dir():
                raise DataError(folder, "label-map dataset folder does not exist")
        pairs = [(p, labels / f"{p.stem}.png") for p in sorted(images.glob(f"*.{image_suffix}"))]
        self.pairs = [(image, label) for image, label in pairs if label.is_file()]
        if not self.pairs:
            raise DataError(root, f"no {image_dir}/*.{image_suffix} with a {label_dir}/<same name>.png")
        self.keep = np.arange(len(self.pairs))

    def __len__(self) -> int:
        return len(self.keep)

    def name(self, index: int) -> str:
        return self.pairs[int(self.keep[index])][0].stem

    def exclude(self, done: set[str]) -> None:
        """Leave out the items whose :meth:`name` is in ``done`` (already pseudo-labelled: resuming stage 2)."""
        self.keep = np.array([i for i in self.keep if self.pairs[int(i)][0].stem not in done], dtype=np.int64)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        image_path, label_path = self.pairs[int(self.keep[index])]
        image = read_image(image_path)
        try:
            with Image.open(label_path) as label:
                label_map = np.array(label)
        except (OSError, SyntaxError, ValueError) as err:
            raise DataError(label_path, f"cannot decode label-map PNG ({err})") from None
        if label_map.ndim == 3:
            label_map = label_map[..., 0]
        if label_map.shape != image.shape[:2]:
            raise DataError(
                label_path,
                f"label map is {label_map.shape[1]}x{label_map.shape[0]} but image {image_path.name} is "
                f"{image.shape[1]}x{image.shape[0]}",
            )
        return image, label_map_target(label_map, self.image_size, self.thickness), str(image_path)


def pseudo_label_record(
    image_path: str,
    image_size: tuple[int, int],
    pseudo_labels: Sequence[tuple[str, RLE]],
    human_labels: Sequence[tuple[str, RLE]],
) -> dict[str, Any]:
    """A pseudo-label JSON in DirectSAM's layout (``pseudo_labeling.py``): ``{"image_path", "image_size": [W, H]
    of the original image, "pseudo_label": [{"source": model, "label": RLE}, ...], "human_label": [{"source":
    dataset, "label": RLE}, ...]}``; the labels are boundary maps at the model resolution."""
    return {
        "image_path": image_path,
        "image_size": [int(image_size[0]), int(image_size[1])],
        "pseudo_label": [{"source": source, "label": rle} for source, rle in pseudo_labels],
        "human_label": [{"source": source, "label": rle} for source, rle in human_labels],
    }


def read_pseudo_label(path: Path) -> dict[str, Any]:
    """A pseudo-label JSON (:func:`pseudo_label_record`), checked: readable, with ``image_path``, ``image_size``
    and the two label lists."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(path, f"unreadable pseudo-label JSON ({err})") from None
    if not isinstance(record, dict):
        raise DataError(path, "pseudo-label JSON is not an object")
    missing = [key for key in ("image_path", "image_size", "pseudo_label", "human_label") if key not in record]
    if missing:
        raise DataError(path, f"pseudo-label JSON lacks {', '.join(missing)}")
    return record


def _decode(path: Path, entry: Any) -> np.ndarray:
    try:
        return decode_rle(entry["label"]) > 0
    except (ValueError, TypeError, KeyError) as err:
        raise DataError(path, f"corrupt label RLE ({err!r})") from None


class PseudoLabelDataset(BoundaryDataset):
    """Pseudo-label JSONs ``files`` of one folder ``source`` (:func:`pseudo_label_record`).

    Args:
        label: the target: ``"merged"`` (pseudo-label OR human labels, DirectSAM's stage 3; the pseudo-label alone
            when the JSON has no human label), ``"pseudo"`` or ``"human"`` (the OR of the human labels).
        pseudo_label_source: the ``source`` of the pseudo-label to use; None = the last one of the list (the newest
            generation: DirectSAM's ``pseudo_labeling_dsa.py`` appends).
        Other arguments: :class:`BoundaryDataset`.

    A relative ``image_path`` is taken from the JSON's folder. Unreadable JSON, a missing pseudo-label, labels of
    different sizes or an image whose size is not ``image_size`` raise :class:`DataError` naming the file.
    """

    def __init__(
        self,
        source: str,
        files: Sequence[Path],
        image_size: int,
        label: str = "merged",
        pseudo_label_source: str | None = None,
        **kwargs,
    ) -> None:
        if label not in PSEUDO_LABEL_CHOICES:
            raise ValueError(f"label must be one of {', '.join(PSEUDO_LABEL_CHOICES)}, got {label!r}")
        super().__init__(source, image_size, **kwargs)
        self.files = list(files)
        self.label = label
        self.pseudo_label_source = pseudo_label_source

    def __len__(self) -> int:
        return len(self.files)

    def name(self, index: int) -> str:
        return str(self.files[index].relative_to(self.source).with_suffix(""))

    def _pseudo_label(self, path: Path, record: dict[str, Any]) -> np.ndarray:
        entries = record["pseudo_label"]
        if self.pseudo_label_source is not None:
            entries = [e for e in entries if isinstance(e, dict) and e.get("source") == self.pseudo_label_source]
        if not entries:
            sources = [e.get("source") for e in record["pseudo_label"] if isinstance(e, dict)]
            wanted = f" from {self.pseudo_label_source!r}" if self.pseudo_label_source else ""
            raise DataError(path, f"no pseudo-label{wanted} (sources: {sources})")
        return _decode(path, entries[-1])

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        path = self.files[index]
        record = read_pseudo_label(path)
        labels = []
        if self.label in ("merged", "pseudo"):
            labels.append(self._pseudo_label(path, record))
        if self.label == "human" and not record["human_label"]:
            raise DataError(path, "no human label (label: human)")
        if self.label in ("merged", "human"):
            # "merged" without human labels is the pseudo-label alone, as in DirectSAM.
            labels += [_decode(path, entry) for entry in record["human_label"]]
        if any(label.shape != labels[0].shape for label in labels):
            raise DataError(path, f"labels differ in size: {sorted({label.shape for label in labels})}")
        target = np.logical_or.reduce(labels)
        image_path = path.parent / record["image_path"]
        image = read_image(image_path)
        width, height = (int(v) for v in record["image_size"])
        if image.shape[:2] != (height, width):
            raise DataError(path, f"image {image_path} is {image.shape[1]}x{image.shape[0]}, not {width}x{height}")
        return image, resize_masks(target[None], (self.image_size, self.image_size))[0], str(image_path)


def split_pseudo_labels(folder: str | Path, val_fraction: float = 0.01) -> tuple[list[Path], list[Path]]:
    """``(train, val)`` JSON files of a pseudo-label folder (recursive, sorted; names starting with ``_`` left out,
    as DirectSAM does).

    A file is validation when the CRC32 hash of its relative name, over 2**32, is below ``val_fraction``: the split
    is deterministic and a file never changes side when others are added (DirectSAM takes the last 1% of the sorted
    names, which moves files across when a folder grows). A folder of two or more files whose hashes give no
    validation file gets the one with the smallest hash.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "pseudo-label folder does not exist")
    files = sorted(p for p in folder.rglob("*.json") if not p.name.startswith("_"))
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

"""``BoundaryDataModule``: DirectSAM's three stages of data, wired from readers or pseudo-label folders."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader, Dataset

from samlab.data.boundaries.augment import BoundaryAugment
from samlab.data.boundaries.batch import BoundaryBatch, collate_boundaries
from samlab.data.boundaries.dataset import (
    BoundaryDataset,
    ConcatBoundaryDataset,
    LabelMapBoundaryDataset,
    PseudoLabelDataset,
    ReaderBoundaryDataset,
    split_pseudo_labels,
)
from samlab.data.datasets import seeded_loader
from samlab.data.device import NormalizeOnDevice


class BoundaryDataModule(NormalizeOnDevice, L.LightningDataModule):
    """DirectSAM's three stages of data.

    Args:
        image_size: square side training images and targets are resized to (linked to the model's).
        format: format of ``root``/``val_root``/``predict_root``: a reader's (``sa1b``, ``coco``, ``mose``), or
            ``label_maps`` (``<root>/images/*.jpg`` + ``<root>/labels/*.png``, :class:`LabelMapBoundaryDataset`).
        root: training dataset (stage 1) — or None when training on ``pseudo_label_roots``.
        val_root: held-out dataset of ``format``.
        predict_root: dataset to pseudo-label (stage 2).
        pseudo_label_roots: folders of pseudo-label JSONs (stage 3); each is split train/val by ``val_fraction``.
        val_fraction: validation share of each pseudo-label folder (DirectSAM: 1%).
        label: target of the pseudo-label JSONs: ``merged`` (DirectSAM), ``pseudo`` or ``human``.
        pseudo_label_source: which pseudo-label of each JSON (its ``source``); None = the last one.
        thickness: boundary kernel of the training targets, at ``image_size`` (DirectSAM's stage 1: 3).
        val_thickness: boundary kernel of the validation targets, at ``val_image_size`` (``evaluate.py``: 2).
        val_image_size: side of the validation images and targets; None = ``image_size`` (``evaluate.py``: 1024).
        human_thickness: boundary kernel of the human label stored with each pseudo-label (stage 2), drawn at
            ``image_size`` (DirectSAM: 9 at 1800 px).
        batch_size / val_batch_size: samples per batch (val defaults to ``batch_size``).
        num_workers: DataLoader workers.
        seed: base seed; samples are seeded by (seed, epoch, rank, worker, index).
        augment_prob: probability of DirectSAM's blur + colour jitter + grayscale group at training (0: off).
        flip_prob: horizontal flip probability at training (DirectSAM: 0).
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
        label: str = "merged",
        pseudo_label_source: str | None = None,
        thickness: int = 3,
        val_thickness: int = 2,
        val_image_size: int | None = None,
        human_thickness: int = 9,
        batch_size: int = 4,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        augment_prob: float = 0.25,
        flip_prob: float = 0.0,
        skip_bad_samples: bool = False,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.format = format
        self.roots = {"train": root, "val": val_root, "predict": predict_root}
        self.pseudo_label_roots = list(pseudo_label_roots or [])
        self.val_fraction = val_fraction
        self.label = label
        self.pseudo_label_source = pseudo_label_source
        self.thickness = thickness
        self.val_thickness = val_thickness
        self.val_image_size = val_image_size or image_size
        self.human_thickness = human_thickness
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.augment_prob = augment_prob
        self.flip_prob = flip_prob
        self.skip_bad_samples = skip_bad_samples
        self.datasets: dict[str, Dataset | None] = {}

    def _common(self, split: str) -> dict:
        """Size, augmentation, seed and skipping of ``split``'s datasets."""
        training = split == "train"
        return {
            "image_size": self.val_image_size if split == "val" else self.image_size,
            "augment": BoundaryAugment(self.augment_prob, flip_prob=self.flip_prob) if training else None,
            "seed": self.seed,
            "skip_bad_samples": self.skip_bad_samples and training,
        }

    def _reader_dataset(self, split: str) -> BoundaryDataset | None:
        from samlab.tools.inspection import open_reader

        root = self.roots[split]
        if root is None:
            return None
        thickness = {"train": self.thickness, "val": self.val_thickness, "predict": self.human_thickness}[split]
        if self.format == "label_maps":
            return LabelMapBoundaryDataset(root, thickness=thickness, **self._common(split))
        return ReaderBoundaryDataset(open_reader(self.format, root), thickness=thickness, **self._common(split))

    def _pseudo_label_dataset(self, split: str) -> ConcatBoundaryDataset:
        parts = []
        for folder in self.pseudo_label_roots:
            train, val = split_pseudo_labels(folder, self.val_fraction)
            files = train if split == "train" else val
            parts.append(
                PseudoLabelDataset(
                    str(Path(folder)),
                    files,
                    label=self.label,
                    pseudo_label_source=self.pseudo_label_source,
                    **self._common(split),
                )
            )
        return ConcatBoundaryDataset(parts)

    def dataset(self, split: str) -> Dataset | None:
        """The dataset of ``split`` ("train", "val", "predict"; "test" is "val"), built once; None without data."""
        split = "val" if split == "test" else split
        if split not in self.datasets:
            if self.pseudo_label_roots and split in ("train", "val"):
                self.datasets[split] = self._pseudo_label_dataset(split)
            else:
                self.datasets[split] = self._reader_dataset(split)
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

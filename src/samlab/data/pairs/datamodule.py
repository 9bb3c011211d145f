"""``MASAPairDataModule``: view pairs from a COCO instances file or an SA-1B folder, for ``samlab fit``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from samlab.data.datasets import seeded_loader
from samlab.data.device import NormalizeOnDevice
from samlab.data.formats.base import Video
from samlab.data.pairs.augment import PairAugment
from samlab.data.pairs.batch import PairBatch, collate_pairs
from samlab.data.pairs.dataset import PairDataset


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
        max_instances: annotations kept per image (None: all, as the reference).
        min_area: smallest visible area (pixels) for an instance to stay in a view.
        repeat: visits of each training image per epoch.
        samples_per_epoch: training samples per epoch, each from a uniformly drawn image (MASA: 200000 from the
            500K list); None visits every image ``repeat`` times.
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
        max_instances: int | None = None,
        min_area: int = 4,
        repeat: int = 1,
        samples_per_epoch: int | None = None,
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
        self.samples_per_epoch = samples_per_epoch
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
                samples_per_epoch=self.samples_per_epoch if training else None,
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

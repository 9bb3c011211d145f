"""LightningDataModules: thin wiring of reader → :class:`ClipDataset` → DataLoader, one per dataset format.

Training clips: ``num_frames`` contiguous annotated frames with up to ``max_num_objects`` objects visible on the first
frame, augmented by ``train_transform`` (default: SAM 2's MOSE fine-tuning recipe at ``image_size``). Validation,
test and prediction use whole videos (``val_num_frames=None``) with every annotated object, frames resized only
and masks kept at their size on disk (J&F at the original resolution, the official protocol), one video per
batch. ``image_size`` is linked to the model's by the CLI, so YAML files state it once.

The default transforms hand over uint8 frames; :meth:`ClipDataModule.on_after_batch_transfer` normalises them on
the device (a quarter of the bytes between worker processes, and no float32 pass on the CPU), so the model always
receives float32 normalised ``images``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from samlab.data.batch import VideoBatch
from samlab.data.datasets import ClipDataset, InstanceChunkDataset, collate_samples, seeded_loader
from samlab.data.device import NormalizeOnDevice
from samlab.data.formats.base import VideoReader
from samlab.data.sampling import ClipSampler
from samlab.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipTransform,
    EvalTransform,
    SAM2TrainTransform,
)

Split = str  # "train" | "val" | "test" | "predict"


class ClipDataModule(NormalizeOnDevice, L.LightningDataModule):
    """Base of every samlab data module. Subclasses only say how to build a reader for a split (:meth:`reader`).

    Args:
        image_size: square side the frames are resized to.
        num_frames: frames per training clip (1 for images).
        max_num_objects: objects per training clip.
        reverse_time_prob: probability to play a training clip backwards.
        batch_size: training clips per batch (per device).
        val_batch_size: clips per validation/test/predict batch.
        val_num_frames: frames per evaluation clip; None = whole videos.
        val_max_num_objects: objects per evaluation clip; None = all.
        num_workers: DataLoader workers per device.
        repeat: times each training video is visited per epoch (SAM 2's ``multiplier``).
        seed: base seed; samples are seeded by (seed, epoch, rank, index).
        skip_bad_samples: skip (and log, and count in ``VideoBatch.num_skipped``) bad samples instead of raising.
        train_transform: training transform; None = :class:`SAM2TrainTransform` at ``image_size``.
        val_transform: evaluation transform; None = :class:`EvalTransform` at ``image_size`` with the masks kept
            at their size on disk (``resize_masks=False``), so that J&F is scored at the original resolution.
        predict_split: the split ``samlab predict`` reads (``"val"``, ``"test"``, ``"train"`` or ``"predict"``, the
            ``predict_*`` data of the modules that take some); None: ``"predict"`` when that data is given, else
            ``"val"``. ``predict`` prints the split, its folder and its size.

    Transforms built with ``normalize=False`` (the defaults) give uint8 frames, normalised on the device after the
    transfer with the transform's ``mean``/``std``. A given transform with a ``resolution`` other than ``image_size``
    is refused (ValueError), so a config cannot feed the model frames of another size.
    """

    batch_type = VideoBatch

    def __init__(
        self,
        image_size: int = 1024,
        num_frames: int = 8,
        max_num_objects: int | None = 3,
        reverse_time_prob: float = 0.0,
        batch_size: int = 1,
        val_batch_size: int = 1,
        val_num_frames: int | None = None,
        val_max_num_objects: int | None = None,
        num_workers: int = 0,
        repeat: int = 1,
        seed: int = 0,
        skip_bad_samples: bool = False,
        train_transform: ClipTransform | None = None,
        val_transform: ClipTransform | None = None,
        predict_split: Split | None = None,
    ) -> None:
        super().__init__()
        if predict_split not in (None, "train", "val", "test", "predict"):
            raise ValueError(f"predict_split must be 'train', 'val', 'test' or 'predict', got {predict_split!r}")
        self.predict_split = predict_split
        self.has_predict_data = False  # data given for the "predict" split itself (predict_root)
        self.image_size = image_size
        self.num_frames = num_frames
        self.max_num_objects = max_num_objects
        self.reverse_time_prob = reverse_time_prob
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.val_num_frames = val_num_frames
        self.val_max_num_objects = val_max_num_objects
        self.num_workers = num_workers
        self.repeat = repeat
        self.seed = seed
        self.skip_bad_samples = skip_bad_samples
        for name, transform in (("train_transform", train_transform), ("val_transform", val_transform)):
            resolution = getattr(transform, "resolution", None)
            if resolution is not None and resolution != image_size:
                raise ValueError(
                    f"{name} {type(transform).__name__} has resolution {resolution} but image_size is {image_size}: "
                    "set both to the same size (the model is built for image_size); samlab's CLI links the "
                    f"resolution of {name} to image_size, state it only in transforms nested in it (e.g. `then`)"
                )
        self.train_transform = train_transform
        self.val_transform = val_transform
        self.datasets: dict[Split, ClipDataset] = {}

    def reader(self, split: Split) -> VideoReader | None:
        """The reader of ``split`` ("train", "val", "test", "predict"), or None when the split has no data."""
        raise NotImplementedError

    def dataset(self, split: Split) -> ClipDataset | None:
        """The :class:`ClipDataset` of ``split`` (built once), or None when the split has no data."""
        if split not in self.datasets:
            reader = self.reader(split)
            if reader is None:
                return None
            if split == "train":
                sampler = ClipSampler(self.num_frames, self.max_num_objects, self.reverse_time_prob)
                transform = self.train_transform or SAM2TrainTransform(resolution=self.image_size, normalize=False)
                repeat = self.repeat
            else:
                sampler = ClipSampler(self.val_num_frames, self.val_max_num_objects)
                transform = self.val_transform or EvalTransform(self.image_size, normalize=False, resize_masks=False)
                repeat = 1
            self.datasets[split] = ClipDataset(
                reader,
                sampler,
                transform,
                repeat=repeat,
                seed=self.seed,
                skip_bad_samples=self.skip_bad_samples,
            )
        return self.datasets[split]

    def normalization_stats(self) -> tuple[Sequence[float], Sequence[float]]:
        """The statistics of the transform that made the images (ImageNet's unless it says otherwise)."""
        transform = next((d.transform for d in self.datasets.values() if d.transform is not None), None)
        return getattr(transform, "mean", IMAGENET_MEAN), getattr(transform, "std", IMAGENET_STD)

    def setup(self, stage: str | None = None) -> None:
        splits = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": (self.predicted_split(),),
        }
        for split in splits.get(stage or "fit", ("train", "val")):
            self.dataset(split)

    def predicted_split(self) -> Split:
        """The split ``samlab predict`` reads (see ``predict_split``)."""
        if self.predict_split is not None:
            return self.predict_split
        return "predict" if self.has_predict_data else "val"

    def loader(self, split: Split, batch_size: int | None = None) -> DataLoader:
        """A DataLoader over ``split`` yielding :class:`VideoBatch`; DDP-aware through :class:`SeededSampler`."""
        dataset = self.dataset(split)
        if dataset is None:
            raise ValueError(f"{type(self).__name__} has no '{split}' data: set its root/file list in the config")
        training = split == "train"
        return seeded_loader(
            dataset,
            batch_size or (self.batch_size if training else self.val_batch_size),
            training,
            collate_samples,
            self.trainer,
            self.seed,
            self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader | list:
        return self.loader("val") if self.dataset("val") is not None else []

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        split = self.predicted_split()
        loader = self.loader(split)
        if self.trainer is None or self.trainer.is_global_zero:
            source = getattr(loader.dataset.videos, "root", type(loader.dataset.videos).__name__)
            print(f"predict: split '{split}' of {type(self).__name__}: {len(loader.dataset)} items from {source}")
        return loader


class MOSEDataModule(ClipDataModule):
    """MOSE, DAVIS or any DAVIS-layout set (``JPEGImages/<vid>/`` + ``Annotations/<vid>/`` palette PNGs).

    ``root``: training set folder; ``file_list``: optional file with one video name per line (e.g. DAVIS'
    ``ImageSets/2017/train.txt``); ``val_root``/``val_file_list``: held-out videos; ``test_*``/``predict_*`` likewise
    (``samlab predict`` reads them when given, else validation: ``predict_split``). ``per_object``:
    ``Annotations/<vid>/<obj:03d>/<frame>.png`` binary masks.
    ``image_dir``/``annotation_dir``: the two folders under each root (DAVIS 2017: ``JPEGImages/480p``,
    ``Annotations/480p``).
    Other arguments: :class:`ClipDataModule`.
    """

    def __init__(
        self,
        root: str | None = None,
        file_list: str | None = None,
        val_root: str | None = None,
        val_file_list: str | None = None,
        test_root: str | None = None,
        test_file_list: str | None = None,
        predict_root: str | None = None,
        predict_file_list: str | None = None,
        per_object: bool = False,
        image_dir: str = "JPEGImages",
        annotation_dir: str = "Annotations",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.image_dir = image_dir
        self.annotation_dir = annotation_dir
        self.roots = {"train": root, "val": val_root, "test": test_root, "predict": predict_root}
        self.file_lists = {
            "train": file_list,
            "val": val_file_list,
            "test": test_file_list,
            "predict": predict_file_list,
        }
        self.per_object = per_object
        self.has_predict_data = predict_root is not None

    def reader(self, split: Split) -> VideoReader | None:
        from samlab.data.formats.davis import DAVISReader

        root = self.roots[split]
        if root is None:
            return None
        return DAVISReader(
            root,
            file_list=self.file_lists[split],
            image_dir=self.image_dir,
            annotation_dir=self.annotation_dir,
            per_object=self.per_object,
        )


class SAVDataModule(ClipDataModule):
    """SA-V: training layout (``<vid>/%05d.jpg`` + ``<vid>_manual.json``) and val/test layout
    (``JPEGImages_24fps`` + ``Annotations_6fps``).

    ``root``/``json_root``: training frames and annotation JSONs (``json_root`` defaults to ``root``);
    ``include_auto``: also train on ``<vid>_auto.json`` masklets; ``ann_every``: annotation stride (4 for 24 fps);
    ``val_root``/``test_root``/``predict_root``: folders in the val/test layout; ``*file_list``: one video per line.
    Other arguments: :class:`ClipDataModule`.
    """

    def __init__(
        self,
        root: str | None = None,
        json_root: str | None = None,
        file_list: str | None = None,
        include_auto: bool = False,
        ann_every: int = 4,
        val_root: str | None = None,
        val_file_list: str | None = None,
        test_root: str | None = None,
        test_file_list: str | None = None,
        predict_root: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.json_root = json_root
        self.file_list = file_list
        self.include_auto = include_auto
        self.ann_every = ann_every
        self.eval_roots = {"val": val_root, "test": test_root, "predict": predict_root}
        self.eval_file_lists = {"val": val_file_list, "test": test_file_list, "predict": None}
        self.has_predict_data = predict_root is not None

    def reader(self, split: Split) -> VideoReader | None:
        from samlab.data.formats.sav import SAVReader

        if split == "train":
            if self.root is None:
                return None
            return SAVReader(
                self.root,
                layout="train",
                json_root=self.json_root,
                ann_every=self.ann_every,
                include_auto=self.include_auto,
                file_list=self.file_list,
            )
        root = self.eval_roots[split]
        if root is None:
            return None
        return SAVReader(root, layout="val", file_list=self.eval_file_lists[split])


class SA1BDataModule(ClipDataModule):
    """SA-1B (``<name>.jpg`` + ``<name>.json`` with RLE masks), as one-frame clips.

    ``root``: folder of image/JSON pairs (subfolders scanned); ``file_list``: subset to train on (text, one name per
    line, or a JSON list); ``val_root``/``val_file_list``: held-out images. Defaults to ``num_frames=1`` and
    ``max_num_objects=64`` masks per image. Other arguments: :class:`ClipDataModule`.
    """

    def __init__(
        self,
        root: str | None = None,
        file_list: str | None = None,
        val_root: str | None = None,
        val_file_list: str | None = None,
        num_frames: int = 1,
        max_num_objects: int | None = 64,
        val_max_num_objects: int | None = 64,
        **kwargs,
    ) -> None:
        super().__init__(
            num_frames=num_frames,
            max_num_objects=max_num_objects,
            val_max_num_objects=val_max_num_objects,
            **kwargs,
        )
        self.roots = {"train": root, "val": val_root, "test": val_root, "predict": val_root}
        self.file_lists = {"train": file_list, "val": val_file_list, "test": val_file_list, "predict": val_file_list}

    def reader(self, split: Split) -> VideoReader | None:
        from samlab.data.formats.sa1b import SA1BReader

        root = self.roots[split]
        return None if root is None else SA1BReader(root, file_list=self.file_lists[split])


class COCODataModule(ClipDataModule):
    """COCO instances (polygons, RLE, uncompressed RLE), as one-frame clips.

    ``ann_file``/``image_root``: training annotations and images; ``val_ann_file``/``val_image_root``: held-out set
    (also used for test and predict); ``include_crowd``: crowd regions become objects too.
    Defaults to ``num_frames=1`` and ``max_num_objects=None`` (every instance). ``instances_per_sample``: train on
    every instance of every image each epoch, at most this many per sample (an image with more instances gives
    several samples, :class:`~samlab.data.datasets.InstanceChunkDataset`); ``max_num_objects`` then does not apply
    to training. Other arguments: :class:`ClipDataModule`.
    """

    def __init__(
        self,
        ann_file: str | None = None,
        image_root: str | None = None,
        val_ann_file: str | None = None,
        val_image_root: str | None = None,
        include_crowd: bool = False,
        instances_per_sample: int | None = None,
        num_frames: int = 1,
        max_num_objects: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(num_frames=num_frames, max_num_objects=max_num_objects, **kwargs)
        self.instances_per_sample = instances_per_sample
        self.sources = {
            "train": (ann_file, image_root),
            "val": (val_ann_file, val_image_root),
            "test": (val_ann_file, val_image_root),
            "predict": (val_ann_file, val_image_root),
        }
        self.include_crowd = include_crowd

    def reader(self, split: Split) -> VideoReader | None:
        from samlab.data.formats.coco import COCOReader

        ann_file, image_root = self.sources[split]
        if ann_file is None:
            return None
        image_root = image_root or str(Path(ann_file).parent)
        return COCOReader(ann_file, image_root, include_crowd=self.include_crowd)

    def dataset(self, split: Split) -> ClipDataset | None:
        """As :meth:`ClipDataModule.dataset`; with ``instances_per_sample`` the training split is an
        :class:`InstanceChunkDataset`."""
        if split == "train" and self.instances_per_sample is not None and split not in self.datasets:
            reader = self.reader(split)
            if reader is None:
                return None
            transform = self.train_transform or SAM2TrainTransform(resolution=self.image_size, normalize=False)
            self.datasets[split] = InstanceChunkDataset(
                reader, self.instances_per_sample, transform, seed=self.seed, skip_bad_samples=self.skip_bad_samples
            )
        return super().dataset(split)


class _EpochSetter:
    """Exposes ``set_epoch`` as ``MixedLoader.sampler`` so Lightning's per-epoch call reaches every sub-sampler."""

    def __init__(self, loaders: Sequence[DataLoader]) -> None:
        self.loaders = loaders
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for loader in self.loaders:
            loader.sampler.set_epoch(epoch)


class MixedLoader:
    """Iterates several DataLoaders, each batch from one loader chosen with probability ∝ ``weights``.

    One epoch yields ``sum(len(loader))`` batches; a loader that runs out is dropped from the draw (as SAM 2's
    ``MixedDataLoader``). The draw is seeded by ``(seed, epoch)`` and identical on every rank, so all ranks take the
    same kind of batch (image or video) at each step.
    """

    def __init__(self, loaders: Sequence[DataLoader], weights: Sequence[float], seed: int = 0) -> None:
        if len(loaders) != len(weights):
            raise ValueError(f"MixedLoader got {len(loaders)} loaders but {len(weights)} weights")
        self.loaders = list(loaders)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.seed = seed
        self.sampler = _EpochSetter(self.loaders)
        self._served = 0
        self._skip = 0

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders)

    def _draws(self, epoch: int) -> Iterator[int]:
        """The member each batch of ``epoch`` comes from, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        remaining = [len(loader) for loader in self.loaders]
        while any(remaining):
            weights = np.where(np.asarray(remaining) > 0, self.weights, 0.0)
            choice = int(rng.choice(len(self.loaders), p=weights / weights.sum()))
            remaining[choice] -= 1
            yield choice

    def __iter__(self) -> Iterator[VideoBatch]:
        skip, self._skip = self._skip, 0
        draws = itertools.islice(self._draws(self.sampler.epoch), skip, None)
        iterators = [iter(loader) for loader in self.loaders]
        self._served = skip
        for choice in draws:
            self._served += 1
            yield next(iterators[choice])

    def state_dict(self) -> dict[str, int]:
        """``{"epoch": E, "batches": B}``: ``B`` batches of epoch ``E`` were served (see :class:`ResumableLoader`)."""
        return {"epoch": int(self.sampler.epoch), "batches": self._served}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Make the next iteration continue after ``state_dict["batches"]`` batches of ``state_dict["epoch"]``: the
        same member draws, and each member loader resumes after the batches it had served."""
        epoch, served = int(state_dict["epoch"]), int(state_dict["batches"])
        if served >= len(self):
            epoch, served = epoch + 1, 0
        self.sampler.set_epoch(epoch)
        counts = np.bincount(list(itertools.islice(self._draws(epoch), served)), minlength=len(self.loaders))
        for loader, count in zip(self.loaders, counts, strict=True):
            loader.load_state_dict({"epoch": epoch, "batches": int(count)})
        self._skip = served


class MixedDataModule(NormalizeOnDevice, L.LightningDataModule):
    """Co-training on several data modules (e.g. SA-1B images + SA-V videos), as SAM 2's mixed training.

    ``datasets``: the data modules, each with its own batch size, clip length and transforms; ``weights``: sampling
    weight of each (default: proportional to its number of batches). ``image_size`` is imposed on every member.
    Validation/test/prediction come from the members that have such data (a list of loaders when several do).
    """

    batch_type = VideoBatch

    def __init__(
        self,
        datasets: list[ClipDataModule],
        weights: list[float] | None = None,
        image_size: int = 1024,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not datasets:
            raise ValueError("MixedDataModule needs at least one data module")
        self.members = datasets
        self.weights = weights
        self.image_size = image_size
        self.seed = seed
        for member in self.members:
            member.image_size = image_size

    def setup(self, stage: str | None = None) -> None:
        for member in self.members:
            member.trainer = self.trainer
            member.setup(stage)

    def normalization_stats(self) -> tuple[Sequence[float], Sequence[float]]:
        # Members share the normalisation statistics of the model (ImageNet's unless their transforms say otherwise).
        return self.members[0].normalization_stats()

    def train_dataloader(self) -> MixedLoader:
        loaders = [member.train_dataloader() for member in self.members]
        weights = self.weights or [len(loader) for loader in loaders]
        return MixedLoader(loaders, weights, seed=self.seed)

    def _eval_loaders(self, split: Split) -> DataLoader | list[DataLoader]:
        loaders = [member.loader(split) for member in self.members if member.dataset(split) is not None]
        return loaders[0] if len(loaders) == 1 else loaders

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_loaders("test")

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_loaders("predict")


class SynthVideoDataModule(MOSEDataModule):
    """Synthetic MOSE-layout videos written on first use: the data of the quickstart and of the tests.

    ``root`` receives ``train/`` (``train_videos`` videos) and ``val/`` (``val_videos`` held-out videos, another
    seed) from :func:`samlab.data.synth.synthesize` unless they exist already; ``frames``, ``frame_size`` (H, W) and
    ``objects`` shape them. Other arguments: :class:`ClipDataModule`.
    """

    def __init__(
        self,
        root: str = "data/synth",
        train_videos: int = 16,
        val_videos: int = 4,
        frames: int = 12,
        frame_size: tuple[int, int] = (96, 128),
        objects: int = 2,
        synth_seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(root=str(Path(root) / "train"), val_root=str(Path(root) / "val"), **kwargs)
        self.synth_root = Path(root)
        self.synth_args = {"frames": frames, "size": tuple(frame_size), "objects": objects}
        self.split_sizes = {"train": (train_videos, synth_seed), "val": (val_videos, synth_seed + 1)}

    def prepare_data(self) -> None:
        from samlab.data.synth import synthesize

        for split, (videos, seed) in self.split_sizes.items():
            out = self.synth_root / split
            if not (out / "JPEGImages").is_dir():
                synthesize("mose", out, videos=videos, seed=seed, **self.synth_args)

    def reader(self, split: Split) -> VideoReader | None:
        if self.roots[split] is not None and not Path(self.roots[split]).exists():
            self.prepare_data()
        return super().reader(split)

"""Torch datasets over readers: reader → clip sampler → transform, with seeding and bad-sample handling.

Every sample draws its randomness from a generator seeded by ``(seed, epoch, rank, index, attempt)``: the
:class:`SeededSampler` hands the dataset ``(index, epoch, rank)`` triples, so augmentations differ across epochs and
ranks yet a run is reproducible, whichever DataLoader worker loads a sample (with or without persistent workers, with
any ``num_workers``). :class:`ResumableLoader` saves its position in the epoch in checkpoints, so a run resumed
mid-epoch loads the batches an uninterrupted run would.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from samlab.data.batch import VideoBatch, collate_clips
from samlab.data.formats.base import Video
from samlab.data.sampling import Clip, ClipSampler, ClipSpec, load_clip
from samlab.errors import DataError, with_skip_hint

log = logging.getLogger(__name__)
T = TypeVar("T")

ClipTransformFn = Callable[[Clip, np.random.Generator], Clip]
SampleKey = tuple[int, int, int]


def retry_bad_samples(
    load: Callable[[int, np.random.Generator], T],
    index: int,
    rng_for: Callable[[int], np.random.Generator],
    length: int,
    max_retries: int,
    source: str = "dataset",
) -> tuple[T, int]:
    """The ``skip_bad_samples`` loop of every samlab dataset: ``load(index, rng_for(0))``; on a :class:`DataError`,
    log it and load a random other item (drawn from that attempt's generator) with ``rng_for(attempt)``, up to
    ``max_retries`` times. Returns ``(sample, skipped)``; raises :class:`DataError` (naming ``source``) when every
    try was bad."""
    current = index
    for attempt in range(max_retries + 1):
        rng = rng_for(attempt)
        try:
            return load(current, rng), attempt
        except DataError as err:
            log.warning("skipping bad sample (%d so far in this item): %s", attempt + 1, err)
            current = int(rng.integers(0, length))
    raise DataError(source, f"{max_retries + 1} samples in a row were bad; the data set is likely broken")


class SkippedSample:
    """Marker returned by :class:`ClipDataset` in place of a bad sample when ``skip_bad_samples`` is on."""

    def __init__(self, error: DataError) -> None:
        self.error = error


class ClipDataset(Dataset):
    """Clips of the videos (or images) of a reader.

    ``videos``: a reader (any ``Sequence[Video]``); ``sampler``: which frames/objects make a clip; ``transform``:
    a callable ``(clip, rng) -> clip`` producing ``[3, S, S]`` float frames (see :mod:`samlab.data.transforms`).
    ``repeat``: each video appears ``repeat`` times per epoch (SAM 2's ``multiplier``).
    With ``skip_bad_samples=False`` (default) a bad sample raises its :class:`DataError` (which names the file);
    with True, the sample is replaced by another randomly chosen one (up to ``max_skip_retries``), the problem is
    logged with its file, and the count reaches the batch as ``VideoBatch.num_skipped``.
    Items are indexed by an ``int`` or by the ``(index, epoch, rank)`` keys of :class:`SeededSampler`.
    """

    def __init__(
        self,
        videos: Sequence[Video],
        sampler: ClipSampler,
        transform: ClipTransformFn | None = None,
        repeat: int = 1,
        seed: int = 0,
        skip_bad_samples: bool = False,
        max_skip_retries: int = 20,
    ) -> None:
        if len(videos) == 0:
            raise ValueError("ClipDataset got a reader with no videos or images")
        self.videos = videos
        self.sampler = sampler
        self.transform = transform
        self.repeat = repeat
        self.seed = seed
        self.skip_bad_samples = skip_bad_samples
        self.max_skip_retries = max_skip_retries

    def __len__(self) -> int:
        return len(self.videos) * self.repeat

    def _rng(self, index: int, epoch: int, rank: int, attempt: int) -> np.random.Generator:
        # The 0 is where the worker id was: a sample must not depend on the worker that loads it (a resumed run
        # skips batches, which moves samples to other workers), and one-worker runs keep their random streams.
        return np.random.default_rng([self.seed, epoch, rank, 0, index, attempt])

    def load(self, index: int, rng: np.random.Generator, epoch: int = 0) -> Clip:
        """Sample, read and transform the clip of item ``index`` of ``epoch`` with ``rng`` (raises
        :class:`DataError`)."""
        video = self.videos[index % len(self.videos)]
        clip = load_clip(video, self.sampler.sample(video, rng))
        if self.transform is not None:
            clip = self.transform(clip, rng)
        return clip

    def __getitem__(self, key: int | SampleKey) -> Clip | tuple[Clip, int]:
        index, epoch, rank = (key, 0, 0) if isinstance(key, int) else key
        if not self.skip_bad_samples:
            try:
                return self.load(index, self._rng(index, epoch, rank, 0), epoch)
            except DataError as err:
                raise with_skip_hint(err) from None
        return retry_bad_samples(
            lambda i, rng: self.load(i, rng, epoch),
            index,
            lambda attempt: self._rng(index, epoch, rank, attempt),
            len(self),
            self.max_skip_retries,
        )


class InstanceChunkDataset(ClipDataset):
    """Images whose instances are all used every epoch, ``chunk_size`` at a time.

    Each image of ``videos`` (one-frame items, e.g. :class:`~samlab.data.formats.coco.COCOReader`'s) is split into
    ``ceil(instances / chunk_size)`` items per epoch: its instance ids are permuted (seeded by ``(seed, epoch,
    image)``, the same in every process) and cut into consecutive chunks, so every instance is the target of exactly
    one item per epoch and no item holds more than ``chunk_size`` (memory stays bounded), unlike a random subset per
    visit. Other arguments: :class:`ClipDataset` (``sampler`` is unused: the chunk is the sample). An image without
    instances raises :class:`DataError` naming it (or is skipped and counted with ``skip_bad_samples``).
    """

    def __init__(
        self,
        videos: Sequence[Video],
        chunk_size: int,
        transform: ClipTransformFn | None = None,
        seed: int = 0,
        skip_bad_samples: bool = False,
        max_skip_retries: int = 20,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        super().__init__(videos, ClipSampler(1, None), transform, 1, seed, skip_bad_samples, max_skip_retries)
        self.chunk_size = chunk_size
        self.chunks: list[tuple[int, int]] = []
        for i, video in enumerate(videos):
            count = len(video.masks(0).ids())
            self.chunks += [(i, j) for j in range(max(1, -(-count // chunk_size)))]

    def __len__(self) -> int:
        return len(self.chunks)

    def chunk_ids(self, index: int, epoch: int) -> list[int]:
        """The instance ids of item ``index`` in ``epoch`` (sorted)."""
        image, j = self.chunks[index]
        ids = self.videos[image].masks(0).ids()
        order = np.random.default_rng([self.seed, epoch, image]).permutation(len(ids))
        return sorted(int(ids[k]) for k in order[j * self.chunk_size : (j + 1) * self.chunk_size])

    def load(self, index: int, rng: np.random.Generator, epoch: int = 0) -> Clip:
        """Read and transform the chunk of instances of item ``index`` of ``epoch`` (raises :class:`DataError`)."""
        video = self.videos[self.chunks[index][0]]
        ids = self.chunk_ids(index, epoch)
        if not ids:
            raise DataError(video.source, f"'{video.name}': no object is annotated")
        clip = load_clip(video, ClipSpec(frames=[0], object_ids=ids))
        if self.transform is not None:
            clip = self.transform(clip, rng)
        return clip


def collate_samples(items: Sequence[Clip | tuple[Clip, int]]) -> VideoBatch:
    """Collate :class:`ClipDataset` items (clips, or ``(clip, skipped)`` pairs) into a :class:`VideoBatch`."""
    clips: list[Clip] = []
    skipped = 0
    for item in items:
        if isinstance(item, tuple):
            clip, count = item
            skipped += count
        else:
            clip = item
        clips.append(clip)
    return collate_clips(clips, num_skipped=skipped)


class SeededSampler(DistributedSampler):
    """A DDP-aware sampler that yields ``(index, epoch, rank)`` keys instead of bare indices.

    It partitions (and, when ``shuffle``, permutes with ``seed + epoch``) the dataset like
    :class:`~torch.utils.data.DistributedSampler`; Lightning keeps it as is under DDP and calls ``set_epoch``.
    ``start``: keys of this process's share to skip in the next iteration only (a run resumed mid-epoch); 0 after.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.start = 0

    def __iter__(self) -> Iterator[SampleKey]:  # type: ignore[override]
        start, self.start = self.start, 0
        for index in itertools.islice(super().__iter__(), start, None):
            yield (int(index), self.epoch, self.rank)


class ResumableLoader(DataLoader):
    """A DataLoader over a :class:`SeededSampler` that knows its position in the epoch.

    Lightning saves the ``state_dict`` of stateful training loaders in its checkpoints and hands it back to
    ``load_state_dict`` on resume: ``{"epoch": E, "batches": B}``, the epoch and the batches of it served so far. On
    resume, the next iteration starts at batch ``B`` of epoch ``E`` (at the next epoch when ``E`` was complete),
    without loading the skipped samples, so a run resumed mid-epoch gets the batches an uninterrupted one would.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, SeededSampler):
            raise TypeError(f"ResumableLoader needs a SeededSampler, got {type(self.sampler).__name__}")
        self._served = 0

    def __iter__(self) -> Iterator[Any]:
        self._served = self.sampler.start // (self.batch_size or 1)
        for batch in super().__iter__():
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """``{"epoch": E, "batches": B}``: ``B`` batches of epoch ``E`` were served by the current iteration."""
        return {"epoch": int(self.sampler.epoch), "batches": self._served}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Make the next iteration continue after ``state_dict["batches"]`` batches of ``state_dict["epoch"]``."""
        epoch, served = int(state_dict["epoch"]), int(state_dict["batches"])
        if served >= len(self):
            epoch, served = epoch + 1, 0
        self.sampler.set_epoch(epoch)
        self.sampler.start = served * (self.batch_size or 1)


def worker_init_fn(worker_id: int) -> None:
    """Seed Python's, NumPy's and torch's global generators per worker for third-party code that uses them."""
    import random

    base = torch.initial_seed() % 2**32
    random.seed(base + worker_id)
    np.random.seed((base + worker_id) % 2**32)


def seeded_loader(
    dataset: Dataset,
    batch_size: int,
    training: bool,
    collate_fn: Callable,
    trainer: Any = None,
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoader:
    """The DataLoader every samlab data module uses: a :class:`SeededSampler` over the ``trainer``'s processes (one
    process without a trainer), shuffled and with incomplete last batches dropped under DDP when ``training``,
    :func:`worker_init_fn`, persistent workers, and batches in pinned memory when the trainer runs on CUDA (so that
    their copies to the GPU are asynchronous). Training loaders are :class:`ResumableLoader` (their epoch position
    goes in checkpoints); evaluation loaders plain DataLoaders (Lightning rebuilds those with its own samplers)."""
    replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
    pin_memory = trainer is not None and trainer.strategy.root_device.type == "cuda"
    loader_class = ResumableLoader if training else DataLoader
    return loader_class(
        dataset,
        batch_size=batch_size,
        sampler=SeededSampler(dataset, num_replicas=replicas, rank=rank, shuffle=training, seed=seed),
        num_workers=num_workers,
        collate_fn=collate_fn,
        worker_init_fn=worker_init_fn,
        persistent_workers=num_workers > 0,
        drop_last=training and replicas > 1,
        pin_memory=pin_memory,
    )

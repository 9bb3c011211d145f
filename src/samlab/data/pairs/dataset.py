"""Pairs of independently augmented views of one image, with instance ids: MASA's training data.

Two views of one image give free instance correspondences: an instance keeps its annotation id in both views. An
instance whose mask vanishes from a view (cropped out, shrunk below ``min_area`` pixels) is dropped from that view;
only ids present in both views are positives, so nothing is matched to the wrong object. Both views of a
sample are blended with the same mixup partner image (as the reference); its instances get negative ids, one per
partner annotation, shared by the two views: the same partner object is the same id in both views (a positive),
and no partner id equals an annotation id of the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset, get_worker_info

from samlab.data.datasets import SampleKey, retry_bad_samples
from samlab.data.formats.base import Video
from samlab.data.pairs.augment import PairAugment, fit_params, render_view
from samlab.data.pairs.batch import PairSample, View
from samlab.data.sampling import read_annotated_frame
from samlab.errors import DataError, with_skip_hint
from samlab.masks import masks_to_boxes


class PairDataset(Dataset):
    """Pairs of augmented views of the images of a reader (COCO or SA-1B, any ``Sequence[Video]`` of images).

    Args:
        images: the images (one-frame videos); objects are their annotations.
        image_size: side ``S`` of the square views.
        augment: the augmentation of each view; None gives views that are only resized to fit (no randomness).
        max_instances: annotations kept per image (chosen at random when there are more); None keeps all, as
            the reference.
        min_area: smallest visible mask area in pixels for an instance to stay in a view.
        seed: base seed; sample ``(index, epoch, rank)`` draws from ``(seed, epoch, rank, worker, index, attempt)``.
        repeat: times each image is visited per epoch.
        samples_per_epoch: draw this many samples per epoch, each from an image chosen uniformly at random (with
            replacement), instead of visiting every image ``repeat`` times: MASA's ``RandomSampleConcatDataset``
            (``fixed_length=200000`` from the 500K list).
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
        max_instances: int | None = None,
        min_area: int = 4,
        seed: int = 0,
        repeat: int = 1,
        samples_per_epoch: int | None = None,
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
        if samples_per_epoch is not None and (samples_per_epoch < 1 or repeat != 1):
            raise ValueError(
                f"PairDataset: samples_per_epoch must be >= 1 and excludes repeat, got {samples_per_epoch} / {repeat}"
            )
        self.repeat = repeat
        self.samples_per_epoch = samples_per_epoch
        self.skip_bad_samples = skip_bad_samples
        self.max_skip_retries = max_skip_retries
        self.return_masks = return_masks
        self.fixed = fixed

    def __len__(self) -> int:
        if self.samples_per_epoch is not None:
            return self.samples_per_epoch
        return len(self.images) * self.repeat

    def _read(self, index: int, rng: np.random.Generator, limit: int | None) -> tuple[np.ndarray, np.ndarray, list]:
        video = self.images[index % len(self.images)]
        image, frame_masks = read_annotated_frame(video, 0)
        ids = frame_masks.ids()
        if limit is not None and len(ids) > limit:
            ids = sorted(int(i) for i in rng.choice(ids, size=limit, replace=False))
        return image, frame_masks.decode(ids), ids

    def _view(
        self,
        image: np.ndarray,
        masks: np.ndarray,
        ids: np.ndarray,
        rng: np.random.Generator,
        partner: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> View:
        size = self.image_size
        if self.augment is None:
            params = fit_params(image.shape[:2], size)
        else:
            params = self.augment.draw(image.shape[:2], None if partner is None else partner[0].shape[:2], size, rng)
        alpha = self.augment.mixup_alpha if self.augment is not None else 0.0
        out, out_masks = render_view(image, masks, params, size, None if partner is None else partner[:2], alpha)
        if params.partner_matrix is not None and partner is not None:
            ids = np.concatenate([ids, partner[2]])
        keep = out_masks.reshape(len(out_masks), -1).sum(axis=1) >= self.min_area
        out_masks = out_masks[keep]
        return View(
            image=out,
            boxes=masks_to_boxes(out_masks).astype(np.float32).reshape(-1, 4),
            instance_ids=ids[keep].astype(np.int64),
            masks=out_masks if self.return_masks else None,
        )

    def load(self, index: int, rng: np.random.Generator) -> PairSample:
        """Read the image of sample ``index`` and make its two views with ``rng`` (raises :class:`DataError`).

        With ``samples_per_epoch`` the image is drawn uniformly from ``rng`` (so from the sample's seed); otherwise it
        is image ``index % len(images)``."""
        if self.samples_per_epoch is not None:
            index = int(rng.integers(0, len(self.images)))
        image, masks, ids = self._read(index, rng, self.max_instances)
        video = self.images[index % len(self.images)]
        if not ids:
            raise DataError(video.source, f"image '{video.name}' has no instance")
        partner = None
        count = len(self.images)
        if self.augment is not None and self.augment.mixup_prob > 0 and count > 1:
            # One partner image per sample, shared by both views (the reference broadcasts its mixup partner), so
            # that the partner's objects are positives too; its ids are negative, one per partner annotation.
            other = (index % count + int(rng.integers(1, count))) % count
            p_image, p_masks, p_ids = self._read(other, rng, self.max_instances)
            if p_ids:  # the reference does not blend a partner without objects
                partner = (p_image, p_masks, -1 - np.arange(len(p_ids), dtype=np.int64))
        ids_array = np.asarray(ids, dtype=np.int64)
        key, ref = (self._view(image, masks, ids_array, rng, partner) for _ in range(2))
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
            try:
                return self.load(index, self._rng(index, epoch, rank, 0))
            except DataError as err:
                raise with_skip_hint(err) from None
        sample, skipped = retry_bad_samples(
            self.load, index, lambda attempt: self._rng(index, epoch, rank, attempt), len(self), self.max_skip_retries
        )
        sample.skipped = skipped
        return sample

"""Pairs of independently augmented views of one image, with instance ids: MASA's training data.

Two views of one image give free instance correspondences: an instance keeps its annotation id in both views. An
instance whose mask vanishes from a view (cropped out, shrunk below ``min_area`` pixels) is dropped from that view;
only ids present in both views are positives, so nothing is matched to the wrong object. Instances of a mixup
partner get negative ids, one per (partner image, annotation), shared by the two views of a sample: the same partner
object is the same id in both views, and no partner id equals an annotation id of the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from torch.utils.data import Dataset, get_worker_info

from samlab.data.datasets import SampleKey, retry_bad_samples
from samlab.data.formats.base import Video
from samlab.data.pairs.augment import PairAugment, warp_view
from samlab.data.pairs.batch import PairSample, View
from samlab.data.sampling import read_annotated_frame
from samlab.errors import DataError
from samlab.masks import masks_to_boxes


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

"""Device-side normalisation shared by every data module whose loaders hand over uint8 images.

Loaders move uint8 images (a quarter of the bytes of float32); :class:`NormalizeOnDevice` turns them into float32
``(x / 255 - mean) / std`` once the batch is on the model's device, in Lightning's ``on_after_batch_transfer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from samlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_images


class NormalizeOnDevice:
    """Mixin for LightningDataModules: normalises the uint8 image fields of their batches on the device.

    Subclasses name the batch class (``batch_type``) and its image fields (``image_fields``, tensors
    ``[..., 3, H, W]``) and may override :meth:`normalization_stats` (ImageNet's statistics by default). Fields that
    are already float are left alone, so calling :meth:`normalize` twice is harmless.
    """

    batch_type: ClassVar[type]
    image_fields: ClassVar[tuple[str, ...]] = ("images",)

    def normalization_stats(self) -> tuple[Sequence[float], Sequence[float]]:
        """Per-channel ``(mean, std)`` in ``[0, 1]`` units."""
        return IMAGENET_MEAN, IMAGENET_STD

    def normalize(self, batch: Any) -> Any:
        """Normalise ``batch``'s uint8 image fields in place; other objects are returned unchanged."""
        if isinstance(batch, self.batch_type):
            mean, std = self.normalization_stats()
            for name in self.image_fields:
                images = getattr(batch, name)
                if isinstance(images, torch.Tensor) and images.dtype == torch.uint8:
                    setattr(batch, name, normalize_images(images, mean, std))
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return self.normalize(batch)

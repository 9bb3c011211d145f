"""Copy-paste augmentation: objects cut out of other images (an :class:`~samlab.tools.object_bank.ObjectBank`)
pasted into training samples, with the masks they cover updated.

:class:`CopyPaste` works on numpy :class:`Clip` s (before the transforms) and :class:`CopyPasteTransform` composes it
with a :class:`ClipTransform`, so a recipe can state it as its data module's ``train_transform``::

    train_transform:
      class_path: samlab.data.copy_paste.CopyPasteTransform
      init_args:
        bank_dir: data/coco_bank          # written by `samlab data extract-objects`
        max_objects: 3
        then:
          class_path: samlab.data.transforms.SAM2TrainTransform
          init_args: {resolution: 1024, normalize: false}
"""

from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np

from samlab.data.sampling import Clip
from samlab.data.transforms import ClipTransform


class CopyPaste:
    """Paste random objects of a bank into a clip, as new instances that occlude what they cover.

    ``bank_dir``: a bank folder (see :mod:`samlab.tools.object_bank`); ``category_ids``: paste only these
    categories (None: all). With probability ``p`` a call pastes ``k`` objects, ``k`` uniform in
    ``[1, max_objects]``, one after the other; each is resized by a factor uniform in ``scale`` (shrunk further to
    fit the frame), placed at a uniform position where it fits, and pasted at the same place on every frame of the
    clip (images are one-frame clips). A pasted object is a new instance: object id ``-1, -2, ...`` (negative, so
    never a dataset's id; below any negative id already there), label its category id, mask its pasted pixels.
    Occlusion: every mask loses the pixels a later pasted object covers; an instance left with no pixel on any frame
    is removed (never kept as an empty target).
    Randomness comes only from the ``rng`` of the call.
    """

    def __init__(
        self,
        bank_dir: str | os.PathLike[str],
        max_objects: int = 3,
        scale: tuple[float, float] = (0.5, 1.5),
        p: float = 0.5,
        category_ids: list[int] | None = None,
    ) -> None:
        from samlab.tools.object_bank import ObjectBank

        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
        self.bank = ObjectBank(bank_dir, category_ids=category_ids)
        self.max_objects = max_objects
        self.scale = (float(scale[0]), float(scale[1]))
        self.p = p

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        """A new clip with objects pasted (``clip`` is not modified); frames ``[H, W, 3]`` uint8, masks
        ``[T, O', H, W]`` bool."""
        if rng.random() >= self.p:
            return clip
        height, width = clip.frames[0].shape[:2]
        frames = [frame.copy() for frame in clip.frames]
        masks = [clip.masks[:, o].copy() for o in range(clip.num_objects)]  # O masks [T, H, W]
        object_ids = list(clip.object_ids)
        labels = list(clip.labels) if clip.labels else [0] * len(object_ids)
        next_id = min(0, *object_ids) - 1
        for _ in range(int(rng.integers(1, self.max_objects + 1))):
            obj = self.bank[int(rng.integers(len(self.bank)))]
            factor = float(rng.uniform(*self.scale))
            h, w = obj.mask.shape
            factor = min(factor, height / h, width / w)
            size = (max(1, round(w * factor)), max(1, round(h * factor)))
            rgb = cv2.resize(obj.rgb, size, interpolation=cv2.INTER_LINEAR)
            cut = cv2.resize(obj.mask.view(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
            y0, x0 = int(rng.integers(height - size[1] + 1)), int(rng.integers(width - size[0] + 1))
            pasted = np.zeros((height, width), dtype=bool)
            pasted[y0 : y0 + size[1], x0 : x0 + size[0]] = cut
            if not pasted.any():
                continue
            for frame in frames:
                frame[pasted] = rgb[cut]
            for mask in masks:
                mask &= ~pasted
            masks.append(np.broadcast_to(pasted, (clip.num_frames, height, width)).copy())
            object_ids.append(next_id)
            labels.append(obj.category_id)
            next_id -= 1
        visible = [o for o, mask in enumerate(masks) if mask.any()]
        stacked = np.zeros((clip.num_frames, len(visible), height, width), dtype=bool)
        for k, o in enumerate(visible):
            stacked[:, k] = masks[o]
        return dataclasses.replace(
            clip,
            frames=frames,
            masks=stacked,
            object_ids=[object_ids[o] for o in visible],
            labels=[labels[o] for o in visible],
        )


class CopyPasteTransform(ClipTransform):
    """:class:`CopyPaste` on the numpy clip, then the transform ``then`` (e.g. :class:`SAM2TrainTransform`).

    Arguments other than ``then``: :class:`CopyPaste`. ``mean``, ``std`` and ``normalize`` are those of ``then``
    (the data module normalises uint8 batches with them). Call as ``transform(clip, rng)``.
    """

    def __init__(
        self,
        bank_dir: str,
        then: ClipTransform,
        max_objects: int = 3,
        scale: tuple[float, float] = (0.5, 1.5),
        p: float = 0.5,
        category_ids: list[int] | None = None,
    ) -> None:
        super().__init__([], mean=then.mean, std=then.std, normalize=then.normalize)
        self.copy_paste = CopyPaste(
            bank_dir, max_objects=max_objects, scale=(scale[0], scale[1]), p=p, category_ids=category_ids
        )
        self.then = then
        self.resolution = getattr(then, "resolution", None)

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        """Paste objects into ``clip`` then apply ``then``, both with randomness from ``rng``."""
        return self.then(self.copy_paste(clip, rng), rng)

    def __repr__(self) -> str:
        cp = self.copy_paste
        return (
            f"CopyPasteTransform(bank_dir={str(cp.bank.folder)!r}, then={self.then!r}, max_objects={cp.max_objects}, "
            f"scale={cp.scale}, p={cp.p})"
        )

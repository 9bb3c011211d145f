"""The batch layout every samlab model consumes, and the collate function that builds it.

Layout (the same as SAM 2's ``BatchedVideoDatapoint``, so its model code can be fed directly)::

    images            [T, B, 3, H, W]           frames, time first: uint8 out of the DataLoader (the default
                                                transforms), float32 normalised once the data module's
                                                ``on_after_batch_transfer`` has run (what models receive)
    masks             bool    [T, O, H, W]      O = all objects of all B clips, clip after clip
    obj_to_frame_idx  int32   [T, O, 2]         (t, b): frame t of clip b holds object o
    object_ids        int64   [O]               dataset object id (annotation id, masklet index, palette index)
    labels            int64   [O]               category id (0 when the dataset has none)
    clip_index        int64   [O]               b of each object
    orig_sizes        int64   [B, 2]            (H, W) of the frames on disk
    frame_indices     int64   [B, T]            original frame numbers
    video_names       list[str] of length B
    num_skipped       int                       bad samples skipped and replaced while building this batch

An image batch is ``T = 1``; MASA's image pairs are ``T = 2`` (two views of one image, object ids matched).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from samlab.data.sampling import Clip


@dataclass
class VideoBatch:
    """A collated batch of clips; see the module docstring for shapes."""

    images: torch.Tensor
    masks: torch.Tensor
    obj_to_frame_idx: torch.Tensor
    object_ids: torch.Tensor
    labels: torch.Tensor
    clip_index: torch.Tensor
    orig_sizes: torch.Tensor
    frame_indices: torch.Tensor
    video_names: list[str] = field(default_factory=list)
    num_skipped: int = 0

    @property
    def num_frames(self) -> int:
        return int(self.images.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def num_objects(self) -> int:
        return int(self.masks.shape[1])

    def objects_of(self, b: int) -> torch.Tensor:
        """Indices (into the O axis) of the objects of clip ``b``."""
        return torch.nonzero(self.clip_index == b).flatten()

    def to(self, device: torch.device | str) -> VideoBatch:
        """A copy with every tensor on ``device``.

        Copies to an accelerator are non-blocking (asynchronous from pinned memory, see :meth:`pin_memory`, as
        SAM 2's trainer), so the host does not wait for the transfer; copies to the CPU block.
        """
        non_blocking = torch.device(device).type != "cpu"
        moved = {
            name: value.to(device, non_blocking=non_blocking) if isinstance(value, torch.Tensor) else value
            for name, value in vars(self).items()
        }
        return VideoBatch(**moved)

    def pin_memory(self) -> VideoBatch:
        """A copy with every tensor in page-locked host memory (what ``DataLoader(pin_memory=True)`` calls)."""
        pinned = {
            name: value.pin_memory() if isinstance(value, torch.Tensor) else value for name, value in vars(self).items()
        }
        return VideoBatch(**pinned)


def collate_clips(clips: Sequence[Clip], num_skipped: int = 0) -> VideoBatch:
    """Stack transformed clips (frames ``[3, H, W]`` float tensors, masks ``[T, O, H, W]``) into a :class:`VideoBatch`.

    All clips must have the same number of frames and the same frame size; clips may hold different object counts.
    """
    if not clips:
        raise ValueError("collate_clips needs at least one clip")
    num_frames = clips[0].num_frames
    for clip in clips:
        if clip.num_frames != num_frames:
            raise ValueError(
                f"cannot batch clips of different lengths: '{clips[0].video_name}' has {num_frames} frames, "
                f"'{clip.video_name}' has {clip.num_frames}"
            )
    images = torch.stack([torch.stack([torch.as_tensor(f) for f in clip.frames]) for clip in clips], dim=1)
    masks = torch.cat([torch.as_tensor(clip.masks, dtype=torch.bool) for clip in clips], dim=1)
    clip_index = torch.cat([torch.full((clip.num_objects,), b, dtype=torch.int64) for b, clip in enumerate(clips)])
    frame_of = torch.arange(num_frames, dtype=torch.int32)[:, None].expand(num_frames, len(clip_index))
    obj_to_frame_idx = torch.stack([frame_of, clip_index.to(torch.int32)[None].expand_as(frame_of)], dim=-1)
    return VideoBatch(
        images=images,
        masks=masks,
        obj_to_frame_idx=obj_to_frame_idx.contiguous(),
        object_ids=torch.tensor([i for clip in clips for i in clip.object_ids], dtype=torch.int64),
        labels=torch.tensor(
            [lab for clip in clips for lab in (clip.labels or [0] * clip.num_objects)], dtype=torch.int64
        ),
        clip_index=clip_index,
        orig_sizes=torch.tensor([clip.orig_size for clip in clips], dtype=torch.int64),
        frame_indices=torch.tensor([clip.frame_indices for clip in clips], dtype=torch.int64),
        video_names=[clip.video_name for clip in clips],
        num_skipped=num_skipped,
    )

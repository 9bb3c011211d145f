"""Clip sampling: which frames and which objects of a :class:`Video` make one training sample.

A :class:`Clip` is the numpy form of a sample before transforms: ``T`` RGB frames and ``[T, O, H, W]`` masks.
An image is a clip of one frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from samlab.data.formats.base import FrameMasks, Video
from samlab.errors import DataError


@dataclass
class Clip:
    """Frames and masks of one sample.

    ``frames``: ``T`` arrays ``[H, W, 3]`` uint8 RGB (after transforms: float32 ``[3, H, W]``, see transforms);
    ``masks``: ``[T, O, H, W]`` bool, object ``o`` on frame ``t`` (all false where the object is absent);
    ``object_ids``: the ``O`` dataset object ids; ``frame_indices``: original frame numbers;
    ``orig_size``: ``(H, W)`` of the frames on disk; ``labels``: ``O`` category ids (0 when the format has none).
    """

    video_name: str
    frames: list[np.ndarray]
    masks: np.ndarray
    object_ids: list[int]
    frame_indices: list[int]
    orig_size: tuple[int, int]
    labels: list[int] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def num_objects(self) -> int:
        return len(self.object_ids)


@dataclass
class ClipSpec:
    """The positions of the sampled annotated frames in their video and the chosen object ids."""

    frames: list[int]
    object_ids: list[int]


class ClipSampler:
    """Random contiguous clips, as SAM 2's ``RandomUniformSampler``.

    Picks a window of ``num_frames`` consecutive annotated frames uniformly, reverses it with probability
    ``reverse_time_prob``, and keeps up to ``max_num_objects`` objects chosen at random among those visible on the
    clip's first frame. Windows whose first frame shows no object are redrawn up to ``max_retries`` times.
    ``num_frames=1`` samples single frames (and images). ``num_frames=None`` takes the whole video and every
    object that appears anywhere in it (evaluation).
    """

    def __init__(
        self,
        num_frames: int | None = 8,
        max_num_objects: int | None = 3,
        reverse_time_prob: float = 0.0,
        max_retries: int = 10,
    ) -> None:
        if num_frames is not None and num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames = num_frames
        self.max_num_objects = max_num_objects
        self.reverse_time_prob = reverse_time_prob
        self.max_retries = max_retries

    def sample(self, video: Video, rng: np.random.Generator) -> ClipSpec:
        """Choose frames and objects of ``video``; raises :class:`DataError` for short or object-less videos."""
        if self.num_frames is None:
            return self._whole_video(video)
        available = video.num_frames
        if available < self.num_frames:
            raise DataError(
                video.source,
                f"video '{video.name}' has {available} annotated frames, fewer than num_frames={self.num_frames}",
            )
        for _ in range(self.max_retries):
            start = int(rng.integers(0, available - self.num_frames + 1))
            frames = list(range(start, start + self.num_frames))
            if rng.random() < self.reverse_time_prob:
                frames.reverse()
            visible = video.masks(frames[0]).ids()
            if visible:
                break
        else:
            raise DataError(
                video.source,
                f"'{video.name}': no object is visible on the first frame of any of {self.max_retries} sampled clips",
            )
        if self.max_num_objects is not None and len(visible) > self.max_num_objects:
            visible = sorted(int(i) for i in rng.choice(visible, size=self.max_num_objects, replace=False))
        return ClipSpec(frames=frames, object_ids=visible)

    def _whole_video(self, video: Video) -> ClipSpec:
        ids: set[int] = set()
        for k in range(video.num_frames):
            ids.update(video.masks(k).ids())
        if not ids:
            raise DataError(video.source, f"'{video.name}': no object is annotated on any frame")
        object_ids = sorted(ids)
        if self.max_num_objects is not None:
            object_ids = object_ids[: self.max_num_objects]
        return ClipSpec(frames=list(range(video.num_frames)), object_ids=object_ids)


def read_annotated_frame(video: Video, k: int) -> tuple[np.ndarray, FrameMasks]:
    """Pixels and (lazy) masks of annotated frame ``k``; :class:`DataError` naming the mask file when the masks' size
    differs from the frame's."""
    image = video.read_frame(k)
    frame_masks = video.masks(k)
    if frame_masks.size != image.shape[:2]:
        raise DataError(
            frame_masks.source,
            f"masks are {frame_masks.size[1]}x{frame_masks.size[0]} (WxH) but frame "
            f"{video.frame_path(k).name} is {image.shape[1]}x{image.shape[0]}",
        )
    return image, frame_masks


def load_clip(video: Video, spec: ClipSpec) -> Clip:
    """Read the frames and decode the masks of ``spec``; checks each mask against its frame's size."""
    frames: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for k in spec.frames:
        image, frame_masks = read_annotated_frame(video, k)
        frames.append(image)
        masks.append(frame_masks.decode(spec.object_ids))
    labels_by_id = video.labels()
    return Clip(
        video_name=video.name,
        frames=frames,
        masks=np.stack(masks) if masks else np.zeros((0, 0, 0, 0), dtype=bool),
        object_ids=list(spec.object_ids),
        frame_indices=[video.frame_index(k) for k in spec.frames],
        orig_size=(int(frames[0].shape[0]), int(frames[0].shape[1])),
        labels=[labels_by_id.get(i, 0) for i in spec.object_ids],
    )

from pathlib import Path

import numpy as np
import pytest
import torch

from samlab.data.batch import collate_clips
from samlab.data.formats.base import LabelMapMasks, Video
from samlab.data.sampling import Clip, ClipSampler, ClipSpec, load_clip, read_annotated_frame
from samlab.errors import DataError


class ArrayVideo(Video):
    """An in-memory video: label maps [T, H, W]; frame pixels encode (t, label)."""

    def __init__(self, labels: np.ndarray, name: str = "v", frame_size=None) -> None:
        self.labels_ = labels
        self.name = name
        self.source = f"/data/{name}"
        self.frame_size = frame_size or labels.shape[1:]

    @property
    def num_frames(self) -> int:
        return len(self.labels_)

    def frame_path(self, k: int) -> Path:
        return Path(self.source) / f"{k:05d}.jpg"

    def frame_index(self, k: int) -> int:
        return 4 * k

    def masks(self, k: int) -> LabelMapMasks:
        return LabelMapMasks(self.labels_[k], f"{self.source}/{k:05d}.png")

    def read_frame(self, k: int) -> np.ndarray:
        frame = np.zeros((*self.frame_size, 3), np.uint8)
        frame[..., 0] = k
        return frame


def _video(num_frames=6, present=(1, 2, 3)):
    labels = np.zeros((num_frames, 8, 10), np.uint8)
    for i, obj in enumerate(present):
        labels[:, i * 2 : i * 2 + 2, :3] = obj
    return ArrayVideo(labels)


def test_sampler_window_objects_and_reverse():
    video = _video(num_frames=6)
    sampler = ClipSampler(num_frames=3, max_num_objects=2)
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(50):
        spec = sampler.sample(video, rng)
        assert len(spec.frames) == 3 and spec.frames == list(range(spec.frames[0], spec.frames[0] + 3))
        assert len(spec.object_ids) == 2 and set(spec.object_ids) <= {1, 2, 3}
        starts.add(spec.frames[0])
    assert starts == {0, 1, 2, 3}
    reversed_spec = ClipSampler(num_frames=3, reverse_time_prob=1.0).sample(video, rng)
    assert reversed_spec.frames[0] == reversed_spec.frames[1] + 1


def test_sampler_only_first_frame_objects():
    labels = np.zeros((4, 8, 10), np.uint8)
    labels[0, :2, :2] = 1
    labels[1:, 4:, 4:] = 2  # object 2 appears only later
    spec = ClipSampler(num_frames=4, max_num_objects=3).sample(ArrayVideo(labels), np.random.default_rng(0))
    assert spec.object_ids == [1]


def test_sampler_errors_name_the_video():
    with pytest.raises(DataError, match=r"/data/v.*3 annotated frames, fewer than num_frames=8"):
        ClipSampler(num_frames=8).sample(_video(num_frames=3), np.random.default_rng(0))
    empty = ArrayVideo(np.zeros((5, 8, 10), np.uint8))
    with pytest.raises(DataError, match="no object is visible"):
        ClipSampler(num_frames=2).sample(empty, np.random.default_rng(0))
    with pytest.raises(DataError, match="no object is annotated"):
        ClipSampler(num_frames=None).sample(empty, np.random.default_rng(0))


def test_whole_video_sampler_takes_late_objects():
    labels = np.zeros((4, 8, 10), np.uint8)
    labels[0, :2, :2] = 1
    labels[2, 4:, 4:] = 5
    spec = ClipSampler(num_frames=None, max_num_objects=None).sample(ArrayVideo(labels), np.random.default_rng(0))
    assert spec.frames == [0, 1, 2, 3] and spec.object_ids == [1, 5]


def test_load_clip_masks_follow_ids_and_frames():
    video = _video(num_frames=5)
    clip = load_clip(video, ClipSpec(frames=[3, 2], object_ids=[3, 1, 9]))
    assert clip.masks.shape == (2, 3, 8, 10)
    assert clip.masks[:, 0, 4:6, :3].all() and clip.masks[:, 1, 0:2, :3].all()
    assert not clip.masks[:, 2].any()  # absent object: all-false mask
    assert [f[0, 0, 0] for f in clip.frames] == [3, 2]
    assert clip.frame_indices == [12, 8] and clip.orig_size == (8, 10)


def test_read_annotated_frame_returns_pixels_and_lazy_masks():
    image, masks = read_annotated_frame(_video(num_frames=3), 2)
    assert image.shape == (8, 10, 3) and image[0, 0, 0] == 2
    assert masks.ids() == [1, 2, 3] and masks.source.endswith("00002.png")
    with pytest.raises(DataError, match="masks are 10x8"):
        read_annotated_frame(ArrayVideo(np.ones((1, 8, 10), np.uint8), frame_size=(9, 10)), 0)


def test_load_clip_rejects_mask_of_wrong_size():
    video = ArrayVideo(np.ones((2, 8, 10), np.uint8), frame_size=(9, 10))
    with pytest.raises(DataError, match=r"00000.png: masks are 10x8 \(WxH\) but frame 00000.jpg is 10x9"):
        load_clip(video, ClipSpec(frames=[0], object_ids=[1]))


def _clip(name, num_frames, num_objects, value):
    return Clip(
        video_name=name,
        frames=[torch.full((3, 4, 4), float(value + t)) for t in range(num_frames)],
        masks=np.ones((num_frames, num_objects, 4, 4), bool),
        object_ids=list(range(10 * value, 10 * value + num_objects)),
        frame_indices=list(range(num_frames)),
        orig_size=(40, 50 + value),
    )


def test_collate_layout():
    batch = collate_clips([_clip("a", 3, 2, 0), _clip("b", 3, 1, 1)], num_skipped=2)
    assert batch.images.shape == (3, 2, 3, 4, 4)
    assert batch.images[1, 1, 0, 0, 0] == 2.0  # frame t=1 of clip b (value 1 + 1)
    assert batch.masks.shape == (3, 3, 4, 4)
    assert batch.obj_to_frame_idx.shape == (3, 3, 2)
    assert batch.obj_to_frame_idx[2].tolist() == [[2, 0], [2, 0], [2, 1]]
    assert batch.object_ids.tolist() == [0, 1, 10]
    assert batch.clip_index.tolist() == [0, 0, 1]
    assert batch.objects_of(1).tolist() == [2]
    assert batch.orig_sizes.tolist() == [[40, 50], [40, 51]]
    assert batch.labels.tolist() == [0, 0, 0]
    assert batch.num_skipped == 2 and batch.video_names == ["a", "b"]
    assert (batch.num_frames, batch.batch_size, batch.num_objects) == (3, 2, 3)
    moved = batch.to("cpu")
    assert torch.equal(moved.images, batch.images) and moved.video_names == ["a", "b"]


def test_collate_rejects_mixed_lengths():
    with pytest.raises(ValueError, match="different lengths"):
        collate_clips([_clip("a", 3, 1, 0), _clip("b", 2, 1, 1)])
    with pytest.raises(ValueError):
        collate_clips([])


def test_batch_copies_to_an_accelerator_do_not_block(monkeypatch):
    batch = collate_clips([_clip("a", 2, 1, 0)])
    calls = []
    to = torch.Tensor.to

    def recording(self, *args, **kwargs):
        calls.append(kwargs.get("non_blocking", False))
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", recording)
    moved = batch.to("meta")  # a non-CPU device that needs no accelerator
    assert moved.images.device.type == "meta" and calls and all(calls)
    calls.clear()
    batch.to("cpu")
    assert calls and not any(calls)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pinned_batch_copies_to_the_gpu():
    batch = collate_clips([_clip("a", 2, 1, 0), _clip("b", 2, 2, 1)])
    pinned = batch.pin_memory()
    assert all(getattr(pinned, name).is_pinned() for name in ("images", "masks", "obj_to_frame_idx", "clip_index"))
    loader = torch.utils.data.DataLoader([batch], batch_size=None, pin_memory=True)
    assert next(iter(loader)).images.is_pinned()  # the DataLoader's pinning thread calls VideoBatch.pin_memory
    moved = pinned.to("cuda")
    torch.cuda.synchronize()
    assert torch.equal(moved.images.cpu(), batch.images) and moved.video_names == ["a", "b"]

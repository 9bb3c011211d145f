from __future__ import annotations

import importlib.util
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
import yaml

from samlab.data.batch import collate_clips
from samlab.data.sampling import Clip
from samlab.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipStep,
    ClipTransform,
    EvalTransform,
    SAM2TrainTransform,
    pack_masks,
    sam2_train_transform,
    unpack_masks,
)
from samlab.tools.bench_data import bench_data

COLOURS = [(230, 20, 20), (20, 230, 20), (20, 20, 230)]


def make_clip(frames: list[np.ndarray], masks: np.ndarray) -> Clip:
    num_frames, num_objects = masks.shape[:2]
    return Clip(
        video_name="v",
        frames=frames,
        masks=masks,
        object_ids=list(range(1, num_objects + 1)),
        frame_indices=list(range(10, 10 + num_frames)),
        orig_size=frames[0].shape[:2],
        labels=[0] * num_objects,
    )


def coloured_clip(num_frames: int = 3, size: tuple[int, int] = (48, 64)) -> Clip:
    """Black frames with three coloured rectangles that move; each mask is exactly its colour's pixels."""
    height, width = size
    frames, masks = [], []
    for t in range(num_frames):
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        for o, colour in enumerate(COLOURS):
            top, left = 6 + 10 * o, 8 + 14 * o + 2 * t
            frame[top : top + 12, left : left + 16] = colour
        frames.append(frame)
        masks.append(np.stack([np.all(frame == colour, axis=-1) for colour in COLOURS]))
    return make_clip(frames, np.stack(masks))


def denormalize(frame: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return ((frame * std + mean) * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def test_eval_transform_shapes_dtypes_and_normalisation():
    pixel = np.array([255, 0, 128], dtype=np.uint8)
    frames = [np.broadcast_to(pixel, (30, 40, 3)).copy() for _ in range(2)]
    masks = np.zeros((2, 1, 30, 40), dtype=bool)
    masks[:, 0, 10:20, 20:40] = True
    out = EvalTransform(resolution=16)(make_clip(frames, masks), np.random.default_rng(0))

    assert len(out.frames) == 2
    for frame in out.frames:
        assert isinstance(frame, torch.Tensor) and frame.dtype == torch.float32 and frame.shape == (3, 16, 16)
        expected = (pixel / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
        np.testing.assert_allclose(frame.numpy(), np.broadcast_to(expected[:, None, None], (3, 16, 16)), atol=1e-6)
    assert isinstance(out.masks, np.ndarray) and out.masks.dtype == bool and out.masks.shape == (2, 1, 16, 16)
    # rows 10..20 of 30 and the right half of the columns, resized to 16x16 with nearest neighbours
    assert out.masks[0, 0, 6:10, 8:].all() and not out.masks[0, 0, :5].any() and not out.masks[0, 0, :, :8].any()
    assert (out.object_ids, out.frame_indices, out.orig_size) == ([1], [10, 11], (30, 40))


def test_pack_unpack_roundtrip_over_several_planes():
    masks = np.random.default_rng(0).random((3, 11, 5, 7)) < 0.5
    packed = pack_masks(masks)
    assert packed.shape == (6, 5, 7) and packed.dtype == np.uint8
    # object 9 of frame 1 is bit 1 of plane 1 * 2 + 1
    np.testing.assert_array_equal((packed[3] >> 1) & 1, masks[1, 9])
    np.testing.assert_array_equal(unpack_masks(packed, 3, 11), masks)


def test_consistent_steps_keep_a_static_clip_static_and_per_frame_steps_do_not():
    rng = np.random.default_rng(1)
    texture = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (64, 48), interpolation=cv2.INTER_LINEAR)
    mask = np.zeros((48, 64), dtype=bool)
    mask[10:40, 10:50] = True
    clip = make_clip([texture.copy() for _ in range(4)], np.stack([mask[None]] * 4))

    def steps(consistent: bool) -> list[ClipStep]:
        return [
            ClipStep(A.HorizontalFlip(p=0.5), consistent=consistent),
            ClipStep(A.Affine(rotate=(-30, 30), shear=(-20, 20), p=1.0), consistent=consistent),
            ClipStep(A.ColorJitter(0.3, 0.3, 0.3, 0.0, p=1.0), consistent=consistent),
        ]

    same = ClipTransform(steps(consistent=True))(clip, np.random.default_rng(2))
    assert not torch.equal(same.frames[0], ClipTransform([])(clip, np.random.default_rng(2)).frames[0])
    for t in range(1, 4):
        assert torch.equal(same.frames[t], same.frames[0])
        np.testing.assert_array_equal(same.masks[t], same.masks[0])

    varied = ClipTransform(steps(consistent=False))(clip, np.random.default_rng(2))
    assert not all(torch.equal(varied.frames[t], varied.frames[0]) for t in range(1, 4))
    assert not all(np.array_equal(varied.masks[t], varied.masks[0]) for t in range(1, 4))


@pytest.mark.parametrize("consistent", [True, False])
def test_masks_follow_their_frame_exactly(consistent):
    clip = coloured_clip()
    nearest = cv2.INTER_NEAREST
    transform = ClipTransform(
        [
            ClipStep(A.HorizontalFlip(p=0.5), consistent=consistent),
            ClipStep(A.Affine(rotate=(-25, 25), shear=(-20, 20), interpolation=nearest, p=1.0), consistent=consistent),
            ClipStep(A.Resize(40, 40, interpolation=nearest), consistent=consistent),
        ]
    )
    for seed in range(5):
        out = transform(clip, np.random.default_rng(seed))
        for t, frame in enumerate(out.frames):
            pixels = denormalize(frame)
            for o, colour in enumerate(COLOURS):
                np.testing.assert_array_equal(out.masks[t, o], np.all(pixels == colour, axis=-1))


def test_sam2_recipe_masks_match_the_bilinear_frames():
    clip = coloured_clip(num_frames=4)
    out = sam2_train_transform(resolution=64, grayscale_p=0.0)(clip, np.random.default_rng(3))
    for t, frame in enumerate(out.frames):
        pixels = denormalize(frame).astype(int)
        for o, colour in enumerate(COLOURS):
            mask = out.masks[t, o]
            assert mask.sum() > 50
            # interior pixels of the mask keep (jittered) object colours: the colour's dominant channel stays brightest
            inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            assert (pixels[inner].argmax(axis=-1) == int(np.argmax(colour))).mean() > 0.95


def corner_clip() -> Clip:
    """Object 1: a 3x3 square in the top-left corner of frame 0; object 2: a big central square on every frame,
    and object 1 again in the corner of frame 1."""
    frames = [np.full((40, 40, 3), 100, dtype=np.uint8) for _ in range(2)]
    masks = np.zeros((2, 2, 40, 40), dtype=bool)
    masks[:, 0, 0:3, 0:3] = True
    masks[:, 1, 12:28, 12:28] = True
    return make_clip(frames, masks)


def test_first_frame_safe_affine_is_skipped_rather_than_emptying_a_first_frame_object():
    rotate = A.Affine(rotate=(45, 45), p=1.0)
    clip = corner_clip()
    unsafe = ClipTransform([ClipStep(rotate)])(clip, np.random.default_rng(0))
    assert not unsafe.masks[0, 0].any()  # the rotation alone does empty the corner object

    safe = ClipTransform([ClipStep(rotate, keep_first_frame_objects=True)])(clip, np.random.default_rng(0))
    np.testing.assert_array_equal(safe.masks, clip.masks)


def test_first_frame_safe_affine_lets_later_frames_lose_objects():
    clip = corner_clip()
    clip.masks[0, 0] = False
    clip.masks[0, 0, 15:20, 15:20] = True  # object 1 central on frame 0, in the corner on frame 1
    out = ClipTransform([ClipStep(A.Affine(rotate=(45, 45), p=1.0), keep_first_frame_objects=True)])(
        clip, np.random.default_rng(0)
    )
    assert out.masks[0, 0].any() and out.masks[0, 1].any()
    assert not out.masks[1, 0].any()  # applied: the corner object of frame 1 rotated out of view


def test_deterministic_given_rng():
    clip = coloured_clip(num_frames=3)
    transform = SAM2TrainTransform(resolution=32)
    first = transform(clip, np.random.default_rng(7))
    again = transform(clip, np.random.default_rng(7))
    other = transform(clip, np.random.default_rng(8))
    assert all(torch.equal(a, b) for a, b in zip(first.frames, again.frames, strict=True))
    np.testing.assert_array_equal(first.masks, again.masks)
    assert not all(torch.equal(a, b) for a, b in zip(first.frames, other.frames, strict=True))


def test_image_pairs_many_objects_and_no_objects_collate():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (30, 50, 3), dtype=np.uint8) for _ in range(2)]
    many = make_clip(frames, rng.random((2, 9, 30, 50)) < 0.5)
    none = make_clip(frames, np.zeros((2, 0, 30, 50), dtype=bool))
    transform = sam2_train_transform(resolution=24)
    batch = collate_clips([transform(many, rng), transform(none, rng)])
    assert batch.images.shape == (2, 2, 3, 24, 24) and batch.images.dtype == torch.float32
    assert batch.masks.shape == (2, 9, 24, 24) and batch.masks.dtype == torch.bool
    assert batch.clip_index.tolist() == [0] * 9


def test_clip_step_rejects_interpolated_masks():
    with pytest.raises(ValueError, match="mask_interpolation"):
        ClipStep(A.Resize(8, 8, mask_interpolation=cv2.INTER_LINEAR))


def test_sam2_recipe_has_sam2s_parameters():
    steps = SAM2TrainTransform().steps
    flip, affine, resize, shared, gray, per_frame = (step.transform for step in steps)
    assert [step.consistent for step in steps] == [True, True, True, True, True, False]
    assert [step.keep_first_frame_objects for step in steps] == [False, True, False, False, False, False]
    assert isinstance(flip, A.HorizontalFlip) and flip.p == 0.5
    assert affine.rotate == (-25.0, 25.0) and affine.shear == {"x": (-20.0, 20.0), "y": (0.0, 0.0)}
    assert affine.scale == {"x": (1.0, 1.0), "y": (1.0, 1.0)} and affine.translate_px == {"x": (0, 0), "y": (0, 0)}
    assert (affine.interpolation, affine.mask_interpolation) == (cv2.INTER_LINEAR, cv2.INTER_NEAREST)
    assert affine.fill == (123.0, 116.0, 103.0) and affine.fill_mask == 0
    assert (resize.height, resize.width) == (1024, 1024)
    assert shared.brightness == pytest.approx((0.9, 1.1)) and shared.contrast == pytest.approx((0.97, 1.03))
    assert shared.saturation == pytest.approx((0.97, 1.03)) and shared.hue == (0.0, 0.0) and shared.p == 1.0
    assert isinstance(gray, A.ToGray) and gray.p == 0.05
    assert per_frame.brightness == pytest.approx((0.9, 1.1)) and per_frame.contrast == pytest.approx((0.95, 1.05))
    assert per_frame.saturation == pytest.approx((0.95, 1.05)) and per_frame.hue == (0.0, 0.0)


def test_sam2_recipe_matches_the_official_mose_config():
    spec = importlib.util.find_spec("sam2")
    config = Path(spec.origin).parent / "configs/sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml"
    if not config.is_file():
        pytest.skip("sam2 package without its training configs")
    official = yaml.safe_load(config.read_text())["vos"]["train_transforms"][0]["transforms"]
    names = [t["_target_"].rsplit(".", 1)[1] for t in official]
    order = ["RandomHorizontalFlip", "RandomAffine", "RandomResizeAPI", "ColorJitter", "RandomGrayscale", "ColorJitter"]
    assert names[:6] == order and names[6:] == ["ToTensorAPI", "NormalizeAPI"]
    flip, affine, resize, shared, gray, per_frame = SAM2TrainTransform().steps
    training = pytest.importorskip("training.dataset.transforms")
    assert flip.transform.p == training.RandomHorizontalFlip(consistent_transform=True).p
    assert official[2]["square"] and isinstance(resize.transform, A.Resize)
    assert affine.transform.rotate == (-official[1]["degrees"], official[1]["degrees"])
    assert affine.transform.shear["x"] == (-official[1]["shear"], official[1]["shear"])
    assert official[1]["image_interpolation"] == "bilinear" and affine.transform.interpolation == cv2.INTER_LINEAR
    assert official[4]["p"] == gray.transform.p
    for ours, theirs in ((shared, official[3]), (per_frame, official[5])):
        assert ours.consistent == theirs["consistent_transform"]
        for name in ("brightness", "contrast", "saturation"):
            strength = theirs[name]
            assert getattr(ours.transform, name) == pytest.approx((1 - strength, 1 + strength))
    mean = official[-1]["mean"], official[-1]["std"]
    assert mean == (list(IMAGENET_MEAN), list(IMAGENET_STD))
    # SAM 2's RandomAffine default fill, image_mean=(123, 116, 103)
    reference = training.RandomAffine(degrees=25, consistent_transform=True, shear=20)
    assert affine.transform.fill == tuple(float(v) for v in reference.fill_img)


def test_bench_data_reports_rates_on_a_tiny_mose_set(tmp_path):
    synth = pytest.importorskip("samlab.data.synth")
    synth.synthesize("mose", tmp_path, videos=2, frames=4, size=(48, 64), seed=0)
    threads = cv2.getNumThreads(), torch.get_num_threads()
    result = bench_data(tmp_path, format="mose", num_frames=2, size=32, clips=3, seed=0)
    assert (cv2.getNumThreads(), torch.get_num_threads()) == threads
    assert result["clips"] == 3 and result["frame_size"] == [48, 64] and result["videos"] == 2
    ms = result["ms_per_clip"]
    assert ms["read"] > 0 and ms["transform"] > 0
    assert ms["total"] == pytest.approx(ms["read"] + ms["transform"])
    assert result["clips_per_s_per_worker"] == pytest.approx(1000 / ms["total"])
    assert 1 <= result["objects_per_clip"] <= 3
    with pytest.raises(ValueError, match="unknown format"):
        bench_data(tmp_path, format="nope")

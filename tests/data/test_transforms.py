from __future__ import annotations

import dataclasses
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
    GRAY_WEIGHTS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SAM2_FILL,
    ClipStep,
    ClipTransform,
    ColorJitterParams,
    EvalTransform,
    SAM2AugmentParams,
    SAM2TrainTransform,
    color_matrix,
    normalize_images,
    pack_masks,
    resize_antialiased,
    sam2_warp_matrix,
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


def test_eval_transform_can_keep_masks_at_their_size_on_disk():
    frames = [np.full((30, 40, 3), 90, dtype=np.uint8) for _ in range(2)]
    masks = np.zeros((2, 2, 30, 40), dtype=bool)
    masks[0, 0, 10:20, 20:40] = True
    masks[1, 1, 3:7, 1:2] = True  # a thin object that a 16x16 resize would lose
    clip = dataclasses.replace(make_clip(frames, masks), object_ids=[4, 9], labels=[1, 2])
    out = EvalTransform(resolution=16, normalize=False, resize_masks=False)(clip, np.random.default_rng(0))

    assert all(frame.dtype == torch.uint8 and frame.shape == (3, 16, 16) for frame in out.frames)
    assert out.masks.dtype == bool and np.array_equal(out.masks, masks)
    assert (out.object_ids, out.labels, out.orig_size) == ([4, 9], [1, 2], (30, 40))
    resized = EvalTransform(resolution=16, normalize=False)(clip, np.random.default_rng(0))
    assert resized.masks.shape == (2, 2, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(out.frames, resized.frames))


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
    transform = SAM2TrainTransform(resolution=24)
    batch = collate_clips([transform(many, rng), transform(none, rng)])
    assert batch.images.shape == (2, 2, 3, 24, 24) and batch.images.dtype == torch.float32
    assert batch.masks.shape == (2, 9, 24, 24) and batch.masks.dtype == torch.bool
    assert batch.clip_index.tolist() == [0] * 9


def test_clip_step_rejects_interpolated_masks():
    with pytest.raises(ValueError, match="mask_interpolation"):
        ClipStep(A.Resize(8, 8, mask_interpolation=cv2.INTER_LINEAR))


def fixed_params(num_frames: int, hflip: bool, angle: float, shear: float) -> SAM2AugmentParams:
    """SAM 2 parameters with the given geometry and identity colour (factors 1, no grayscale)."""
    identity = ColorJitterParams((0, 1, 2), 1.0, 1.0, 1.0)
    return SAM2AugmentParams(hflip, angle, shear, identity, False, (identity,) * num_frames)


def box_clip(num_frames: int, size: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> Clip:
    """A smooth random texture on every frame and one rectangle mask ``(top, left, bottom, right)`` per object."""
    height, width = size
    rng = np.random.default_rng(4)
    texture = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (width, height))
    masks = np.zeros((num_frames, len(boxes), height, width), dtype=bool)
    for o, (top, left, bottom, right) in enumerate(boxes):
        masks[:, o, top:bottom, left:right] = True
    return make_clip([texture.copy() for _ in range(num_frames)], masks)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize(("hflip", "angle", "shear"), [(False, 20.0, 0.0), (True, -15.0, 10.0), (True, 25.0, -20.0)])
def test_fused_geometry_matches_torchvision_flip_affine_resize(hflip, angle, shear):
    """SAM 2's own ops (torchvision hflip, affine about the centre, resize) on a mask, against the one fused warp."""
    tvf = pytest.importorskip("torchvision.transforms.functional")
    from torchvision.transforms import InterpolationMode

    clip = box_clip(1, (96, 128), [(16, 20, 70, 90)])
    transform = SAM2TrainTransform(resolution=80)
    out = transform.apply(clip, fixed_params(1, hflip, angle, shear))
    mask = torch.from_numpy(clip.masks[0, :1].astype(np.uint8))
    if hflip:
        mask = tvf.hflip(mask)
    mask = tvf.affine(mask, angle=angle, translate=[0, 0], scale=1.0, shear=[shear, 0.0], fill=0.0)
    mask = tvf.resize(mask, [80, 80], interpolation=InterpolationMode.NEAREST_EXACT)[0].numpy().astype(bool)
    assert iou(out.masks[0, 0], mask) > 0.975
    # same place to a fraction of a pixel: the centroids agree
    ours, theirs = np.argwhere(out.masks[0, 0]).mean(axis=0), np.argwhere(mask).mean(axis=0)
    np.testing.assert_allclose(ours, theirs, atol=0.3)


@pytest.mark.parametrize(("hflip", "angle"), [(True, 20.0), (False, -12.0)])
def test_fused_transform_matches_the_step_by_step_albumentations_pipeline(hflip, angle):
    # square frames at the output size: the resize is the identity and both pipelines interpolate once.
    # albumentations rotates counter-clockwise for positive angles, torchvision (and SAM 2) clockwise.
    clip = box_clip(2, (96, 96), [(16, 20, 70, 90), (40, 8, 60, 40)])
    steps = [
        ClipStep(A.HorizontalFlip(p=1.0 if hflip else 0.0)),
        ClipStep(A.Affine(rotate=(-angle, -angle), fill=SAM2_FILL, p=1.0), keep_first_frame_objects=True),
        ClipStep(A.Resize(96, 96)),
    ]
    reference = ClipTransform(steps, normalize=False)(clip, np.random.default_rng(0))
    transform = SAM2TrainTransform(resolution=96, normalize=False)
    fused = transform.apply(clip, fixed_params(2, hflip, angle, 0.0))
    for t in range(2):
        for o in range(2):
            assert iou(fused.masks[t, o], reference.masks[t, o]) > 0.98
        difference = np.abs(fused.frames[t].numpy().astype(int) - reference.frames[t].numpy())
        assert difference.mean() < 1.0 and np.percentile(difference, 99) <= 3


def test_fused_masks_are_exactly_the_nearest_warp_of_each_mask():
    # 5 frames x 9 objects = 45 masks bit-packed in 6 bytes: two int32 images, the second half empty
    rng = np.random.default_rng(5)
    masks = cv2.resize(rng.random((5 * 9, 6, 8)).transpose(1, 2, 0), (40, 30)).transpose(2, 0, 1) < 0.5
    masks = masks.reshape(5, 9, 30, 40)
    masks[0, :, 10:20, 15:25] = True  # every object visible mid-frame on frame 0: the affine is kept
    clip = make_clip([np.zeros((30, 40, 3), np.uint8)] * 5, masks)
    transform = SAM2TrainTransform(resolution=24)
    out = transform.apply(clip, fixed_params(5, True, 10.0, 5.0))
    matrix = sam2_warp_matrix((30, 40), 24, True, 10.0, 5.0)
    for t in range(5):
        for o in range(9):
            # an int32 reference: OpenCV's uint8 kernel may round a coordinate tie the other way
            expected = cv2.warpAffine(masks[t, o].astype(np.int32), matrix, (24, 24), flags=cv2.INTER_NEAREST)
            np.testing.assert_array_equal(out.masks[t, o], expected.astype(bool))


def test_fused_masks_follow_the_bilinear_frames():
    clip = coloured_clip(num_frames=4)
    out = SAM2TrainTransform(resolution=64, grayscale_p=0.0)(clip, np.random.default_rng(3))
    for t, frame in enumerate(out.frames):
        pixels = denormalize(frame).astype(int)
        for o, colour in enumerate(COLOURS):
            mask = out.masks[t, o]
            assert mask.sum() > 50
            # interior pixels of the mask keep (jittered) object colours: the colour's dominant channel stays brightest
            inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            assert (pixels[inner].argmax(axis=-1) == int(np.argmax(colour))).mean() > 0.95
            # and the pixels just outside are black background (or the grey fill), not the object's colour
            outer = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~cv2.dilate(
                mask.astype(np.uint8), np.ones((3, 3), np.uint8)
            ).astype(bool)
            assert (pixels[outer, int(np.argmax(colour))] < 160).mean() > 0.9


def test_fused_first_frame_rule_drops_the_affine_but_keeps_flip_and_resize():
    clip = corner_clip()
    transform = SAM2TrainTransform(resolution=32)
    out = transform.apply(clip, fixed_params(2, True, 45.0, 0.0))
    flipped = transform.apply(clip, fixed_params(2, True, 0.0, 0.0))
    assert out.masks[0, 0].any()
    np.testing.assert_array_equal(out.masks, flipped.masks)
    assert all(torch.equal(a, b) for a, b in zip(out.frames, flipped.frames, strict=True))
    # the 3x3 corner object, flipped to the top-right corner and resized by 0.8
    assert out.masks[0, 0, :2, -2:].all() and out.masks[0, 0].sum() <= 9 and not out.masks[0, 0, :, :-3].any()


def test_fused_first_frame_rule_lets_later_frames_lose_objects():
    clip = corner_clip()
    clip.masks[0, 0] = False
    clip.masks[0, 0, 15:20, 15:20] = True  # object 1 central on frame 0, in the corner on frame 1
    transform = SAM2TrainTransform(resolution=40)
    out = transform.apply(clip, fixed_params(2, False, 45.0, 0.0))
    assert out.masks[0, 0].any() and out.masks[0, 1].any()
    assert not out.masks[1, 0].any()  # applied: the corner object of frame 1 rotated out of view


def test_sam2_warp_matrix_numbers():
    # identity geometry on a square frame of the output size
    np.testing.assert_allclose(sam2_warp_matrix((10, 10), 10, False, 0.0, 0.0), np.eye(2, 3), atol=1e-12)
    # flip: x -> W - 1 - x; resize 20x40 -> 10x10 with half-pixel centres: x -> (x + 0.5) / 4 - 0.5,
    # y -> (y + 0.5) / 2 - 0.5
    np.testing.assert_allclose(sam2_warp_matrix((20, 40), 10, True, 0.0, 0.0) @ [0, 0, 1], [9.375, -0.25])
    # 90 degrees about the centre of a 5x5 frame, clockwise on screen: the right-middle pixel goes to the bottom
    np.testing.assert_allclose(sam2_warp_matrix((5, 5), 5, False, 90.0, 0.0) @ [4, 2, 1], [2, 4], atol=1e-12)
    # x-shear as torchvision: a point below the centre moves left for a positive shear
    moved = sam2_warp_matrix((5, 5), 5, False, 0.0, 45.0) @ [2, 4, 1]
    np.testing.assert_allclose(moved, [0, 4], atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_color_matrix_matches_torchvision_step_by_step(seed):
    tvf = pytest.importorskip("torchvision.transforms.functional")
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (64, 48))
    transform = SAM2TrainTransform()
    params = transform.sample_params(1, rng)
    params = dataclasses.replace(params, grayscale=seed == 2)
    ops = params.color_ops(0)
    ours = cv2.transform(image, color_matrix(ops, cv2.mean(image)))
    reference = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    adjust = {
        "brightness": tvf.adjust_brightness,
        "contrast": tvf.adjust_contrast,
        "saturation": tvf.adjust_saturation,
        "grayscale": lambda x, _: tvf.rgb_to_grayscale(x, num_output_channels=3),
    }
    for name, factor in ops:
        reference = adjust[name](reference, factor)
    reference = (reference * 255).permute(1, 2, 0).numpy()
    difference = np.abs(ours - reference)
    # rounding (0.5) everywhere; clipping once at the end instead of after each op shows only near saturation
    assert difference.mean() < 1.0 and (difference > 1.0).mean() < 0.05
    # without clipping the composed map is exact: torchvision's ops on an unclipped float image, clipped at the end
    unclipped = image.astype(np.float64)
    for name, factor in ops:
        grey = unclipped @ np.asarray(GRAY_WEIGHTS)
        if name == "brightness":
            unclipped = factor * unclipped
        elif name == "contrast":
            unclipped = factor * unclipped + (1 - factor) * grey.mean()
        elif name == "saturation":
            unclipped = factor * unclipped + (1 - factor) * grey[..., None]
        else:
            unclipped = np.repeat(grey[..., None], 3, axis=-1)
    # (0.5 for the final rounding, a little more for OpenCV's float32 arithmetic)
    np.testing.assert_allclose(ours, np.clip(unclipped, 0, 255), atol=0.6)
    if seed == 2:
        assert (ours[..., 0] == ours[..., 1]).all() and (ours[..., 1] == ours[..., 2]).all()


def test_color_matrix_numbers_and_unknown_ops():
    mean = (100.0, 50.0, 20.0)
    np.testing.assert_allclose(color_matrix([], mean), np.eye(3, 4))
    np.testing.assert_allclose(
        color_matrix([("brightness", 1.5)], mean), np.hstack([1.5 * np.eye(3), np.zeros((3, 1))])
    )
    gray_mean = 0.299 * 100 + 0.587 * 50 + 0.114 * 20
    # brightness 2 then contrast 0.5: the contrast blends with the mean grey of the brightened image
    expected = np.hstack([np.eye(3), np.full((3, 1), 0.5 * 2 * gray_mean)])
    np.testing.assert_allclose(color_matrix([("brightness", 2.0), ("contrast", 0.5)], mean), expected, rtol=1e-6)
    np.testing.assert_allclose(color_matrix([("grayscale", 1.0)], mean)[:, :3], np.tile(GRAY_WEIGHTS, (3, 1)))
    with pytest.raises(ValueError, match="unknown colour op 'hue'"):
        color_matrix([("hue", 0.1)], mean)


def test_sam2_parameter_distributions():
    transform = SAM2TrainTransform()
    rng = np.random.default_rng(0)
    draws = [transform.sample_params(2, rng) for _ in range(3000)]
    angles = np.array([p.angle for p in draws])
    shears = np.array([p.shear for p in draws])
    assert -25 <= angles.min() < -24.5 and 24.5 < angles.max() <= 25 and abs(angles.mean()) < 1.0
    assert -20 <= shears.min() < -19.5 and 19.5 < shears.max() <= 20 and abs(shears.mean()) < 1.0
    # binomial: 3000 draws, 4 standard deviations
    assert abs(np.mean([p.hflip for p in draws]) - 0.5) < 4 * np.sqrt(0.25 / 3000)
    assert abs(np.mean([p.grayscale for p in draws]) - 0.05) < 4 * np.sqrt(0.05 * 0.95 / 3000)
    shared = [p.shared_jitter for p in draws]
    frame = [j for p in draws for j in p.frame_jitter]
    assert len(draws[0].frame_jitter) == 2
    for jitters, (b, c, s) in ((shared, (0.1, 0.03, 0.03)), (frame, (0.1, 0.05, 0.05))):
        for name, strength in (("brightness", b), ("contrast", c), ("saturation", s)):
            values = np.array([getattr(j, name) for j in jitters])
            assert (
                1 - strength <= values.min() < 1 - 0.9 * strength and 1 + 0.9 * strength < values.max() <= 1 + strength
            )
        orders = {j.order for j in jitters}
        assert len(orders) == 6 and all(sorted(order) == [0, 1, 2] for order in orders)


def test_uint8_output_and_normalize_images_match_the_float_output():
    clip = coloured_clip(num_frames=2)
    floats = SAM2TrainTransform(resolution=32)(clip, np.random.default_rng(9))
    uint8 = SAM2TrainTransform(resolution=32, normalize=False)(clip, np.random.default_rng(9))
    assert uint8.frames[0].dtype == torch.uint8 and uint8.frames[0].shape == (3, 32, 32)
    np.testing.assert_array_equal(uint8.masks, floats.masks)
    images = collate_clips([uint8]).images
    assert images.dtype == torch.uint8
    normalised = normalize_images(images)
    assert normalised.dtype == torch.float32
    torch.testing.assert_close(normalised[:, 0], torch.stack(floats.frames), atol=1e-5, rtol=0)
    evaluated = EvalTransform(resolution=16, normalize=False, antialias=False)(clip, np.random.default_rng(0))
    assert evaluated.frames[0].dtype == torch.uint8 and int(evaluated.frames[0].max()) == 230
    with pytest.raises(TypeError, match="uint8"):
        normalize_images(normalised)
    with pytest.raises(ValueError, match=r"\[..., 3, H, W\]"):
        normalize_images(torch.zeros(2, 4, 4, dtype=torch.uint8))


def test_normalize_images_numbers():
    images = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 2).expand(3, 1, 2)
    out = normalize_images(images, mean=(0.5, 0.0, 1.0), std=(0.5, 1.0, 0.25))
    torch.testing.assert_close(out[:, 0], torch.tensor([[-1.0, 1.0], [0.0, 1.0], [-4.0, 0.0]]))


def test_sam2_recipe_matches_the_official_mose_config():
    spec = importlib.util.find_spec("sam2")
    config = Path(spec.origin).parent / "configs/sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml"
    if not config.is_file():
        pytest.skip("sam2 package without its training configs")
    official = yaml.safe_load(config.read_text())["vos"]["train_transforms"][0]["transforms"]
    names = [t["_target_"].rsplit(".", 1)[1] for t in official]
    order = ["RandomHorizontalFlip", "RandomAffine", "RandomResizeAPI", "ColorJitter", "RandomGrayscale", "ColorJitter"]
    assert names[:6] == order and names[6:] == ["ToTensorAPI", "NormalizeAPI"]
    flip, affine, resize, shared, gray, per_frame = official[:6]
    ours = SAM2TrainTransform(resolution=resize["sizes"])
    training = pytest.importorskip("training.dataset.transforms")
    assert ours.hflip_p == training.RandomHorizontalFlip(consistent_transform=True).p
    assert flip["consistent_transform"] and affine["consistent_transform"] and shared["consistent_transform"]
    assert not per_frame["consistent_transform"] and resize["square"]
    assert (ours.degrees, ours.shear, affine["image_interpolation"]) == (affine["degrees"], affine["shear"], "bilinear")
    assert ours.grayscale_p == gray["p"]
    assert ours.shared_jitter == tuple(shared[name] for name in ("brightness", "contrast", "saturation"))
    assert ours.frame_jitter == tuple(per_frame[name] for name in ("brightness", "contrast", "saturation"))
    assert shared["hue"] is None and per_frame["hue"] is None
    mean = official[-1]["mean"], official[-1]["std"]
    assert mean == (list(IMAGENET_MEAN), list(IMAGENET_STD))
    # SAM 2's RandomAffine default fill, image_mean=(123, 116, 103)
    assert tuple(training.RandomAffine(degrees=25, consistent_transform=True, shear=20).fill_img) == SAM2_FILL


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
    assert 0 < result["cpu_transform_ms_per_clip"] <= result["cpu_ms_per_clip"]
    assert 1 <= result["objects_per_clip"] <= 3
    on_cpu = bench_data(tmp_path, format="mose", num_frames=2, size=32, clips=1, seed=0, normalize=True)
    assert (result["normalize"], on_cpu["normalize"]) == (False, True)  # default: the data modules' uint8 hand-over
    antialiased = bench_data(tmp_path, format="mose", num_frames=2, size=32, clips=1, seed=0, antialias=True)
    assert (result["antialias"], antialiased["antialias"]) == (False, True)
    with pytest.raises(ValueError, match="unknown format"):
        bench_data(tmp_path, format="nope")


def natural_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like ``[H, W, 3]`` uint8 image: smooth colour fields, sharp antialiased discs and lines, sensor noise,
    and a fine diagonal pattern in the top-left third that aliases when shrunk without a pre-filter."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (height // 16 + 2, width // 16 + 2, 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(12):
        colour = [float(c) for c in rng.integers(0, 256, 3)]
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        if rng.random() < 0.5:
            cv2.circle(image, centre, int(rng.integers(4, min(height, width) // 4)), colour, -1, cv2.LINE_AA)
        else:
            end = (int(rng.integers(width)), int(rng.integers(height)))
            cv2.line(image, centre, end, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    image += rng.normal(0, 10, image.shape)
    y, x = np.mgrid[: height // 3, : width // 3]
    image[: height // 3, : width // 3] += 60 * np.sin(1.9 * x + 0.7 * y)[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def pil_resize(image: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize(size[::-1], resample)).astype(int)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize(("shape", "size"), [((180, 320), (128, 128)), ((180, 320), (256, 256)), ((60, 80), (96, 96))])
def test_resize_antialiased_is_pils_resize(interpolation, shape, size):
    """PIL itself is the reference: SAM 2's training resize (torchvision F.resize of a PIL image, BILINEAR) and its
    video predictor's frame loader (Image.resize, BICUBIC)."""
    from PIL import Image

    image = natural_image(*shape, seed=2)
    resample = Image.BILINEAR if interpolation == "bilinear" else Image.BICUBIC
    expected = pil_resize(image, size, resample)
    out = resize_antialiased(image, size, interpolation)
    assert out.shape == (*size, 3) and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    difference = np.abs(out.astype(int) - expected)
    assert difference.mean() < 0.1 and difference.max() <= 1
    if size[0] < shape[0]:  # a shrink: plain bilinear aliases, far from PIL (the reason for this function)
        plain = cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)
        assert np.abs(plain.astype(int) - expected).mean() > 3
    assert resize_antialiased(image[..., :1], size, interpolation).shape == (*size, 1)


def test_resize_antialiased_refuses_bad_input():
    with pytest.raises(ValueError, match="unknown interpolation 'area'"):
        resize_antialiased(np.zeros((4, 4, 3), np.uint8), (2, 2), "area")
    with pytest.raises(ValueError, match=r"\[H, W, C\] uint8"):
        resize_antialiased(np.zeros((4, 4, 3), np.float32), (2, 2))


@pytest.mark.parametrize(("shape", "resolution"), [((180, 320), 256), ((400, 600), 256), ((180, 320), 128)])
def test_antialiased_fused_resize_is_sam2s_pil_resize(shape, resolution):
    """With no flip, affine or colour change the fused transform is SAM 2's resize of a PIL frame (PIL BILINEAR):
    within 1 grey level on average with ``antialias=True``, aliased without where the frame shrinks."""
    from PIL import Image

    image = natural_image(*shape, seed=1)
    clip = make_clip([image, image], np.zeros((2, 0, *shape), dtype=bool))
    expected = pil_resize(image, (resolution, resolution), Image.BILINEAR)
    params = fixed_params(2, False, 0.0, 0.0)
    for antialias in (True, False):
        out = SAM2TrainTransform(resolution, normalize=False, antialias=antialias).apply(clip, params)
        difference = np.abs(out.frames[1].permute(1, 2, 0).numpy().astype(int) - expected)
        if antialias:
            # the edge rows blend in the affine's fill where an axis grows (PIL clamps): 0.1 overall, 0.05 inside
            assert difference.mean() < 0.2 and difference[2:-2, 2:-2].mean() < 0.1
        else:
            assert difference.mean() > 1.5


@pytest.mark.parametrize(("hflip", "angle", "shear"), [(True, 20.0, 10.0), (False, -15.0, -20.0)])
def test_antialiased_fused_transform_is_close_to_sam2s_pil_flip_affine_resize(hflip, angle, shear):
    """SAM 2's frame ops on a PIL image (torchvision hflip, bilinear affine with SAM 2's fill, resize) against the
    fused transform: the antialiased one is closer, on average within 1.5 grey levels (two bilinear passes each, in
    the other order), and a frame's masks stay where its pixels are (the same warp)."""
    tvf = pytest.importorskip("torchvision.transforms.functional")
    from PIL import Image
    from torchvision.transforms import InterpolationMode

    image = natural_image(400, 600, seed=3)
    masks = np.zeros((1, 1, 400, 600), dtype=bool)
    masks[0, 0, 150:250, 200:400] = True
    clip = make_clip([image], masks)
    reference = Image.fromarray(image)
    if hflip:
        reference = tvf.hflip(reference)
    reference = tvf.affine(
        reference, angle, [0, 0], 1.0, [shear, 0.0], interpolation=InterpolationMode.BILINEAR, fill=list(SAM2_FILL)
    )
    expected = np.asarray(tvf.resize(reference, [256, 256])).astype(int)
    errors = {}
    for antialias in (True, False):
        out = SAM2TrainTransform(256, normalize=False, antialias=antialias).apply(
            clip, fixed_params(1, hflip, angle, shear)
        )
        errors[antialias] = np.abs(out.frames[0].permute(1, 2, 0).numpy().astype(int) - expected).mean()
        plain = SAM2TrainTransform(256, normalize=False).apply(clip, fixed_params(1, hflip, angle, shear))
        np.testing.assert_array_equal(out.masks, plain.masks)
    assert errors[True] < 1.5 and errors[False] > 2 * errors[True]


def test_eval_transform_resizes_frames_as_sam2s_video_predictor():
    """SAM2VideoPredictor loads frames with PIL's Image.resize (BICUBIC, antialiased): the default EvalTransform
    matches it within a grey level; masks are resized by nearest neighbour either way."""
    from PIL import Image

    image = natural_image(400, 600, seed=4)
    masks = np.zeros((1, 2, 400, 600), dtype=bool)
    masks[0, 0, 100:300, 150:450] = True
    masks[0, 1, 10:20, 590:600] = True
    clip = make_clip([image], masks)
    expected = pil_resize(image, (256, 256), Image.BICUBIC)
    out = EvalTransform(256, normalize=False)(clip, np.random.default_rng(0))
    assert np.abs(out.frames[0].permute(1, 2, 0).numpy().astype(int) - expected).mean() < 0.1
    opencv = EvalTransform(256, normalize=False, antialias=False)(clip, np.random.default_rng(0))
    assert np.abs(opencv.frames[0].permute(1, 2, 0).numpy().astype(int) - expected).mean() > 3
    nearest = np.stack([cv2.resize(m.view(np.uint8), (256, 256), interpolation=cv2.INTER_NEAREST) for m in masks[0]])
    np.testing.assert_array_equal(out.masks[0], nearest.astype(bool))
    np.testing.assert_array_equal(opencv.masks, out.masks)

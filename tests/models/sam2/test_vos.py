"""SAM 2 training forward (prompt plans, correction clicks), semi-supervised VOS inference and the mask writers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from tests.models.sam2.tiny import SIZE, SMALL
from torch import nn

from samlab.data.batch import VideoBatch, collate_clips
from samlab.data.formats.base import read_label_png
from samlab.data.formats.davis import DAVISReader
from samlab.data.sampling import Clip
from samlab.models.sam2.model import build_sam2_model
from samlab.models.sam2.prompts import PromptConfig, PromptPlan
from samlab.models.sam2.vos import (
    VideoPrediction,
    first_appearance,
    forward_training,
    predict_batch,
    segment_batch,
    segment_video,
)
from samlab.models.sam2.writers import VOSMaskWriter, davis_palette, label_map, write_object_pngs, write_palette_pngs


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return build_sam2_model("sam2.1_hiera_t", image_size=SIZE, train=True, overrides=SMALL)


def make_batch(
    num_frames: int = 3, objects: tuple[int, ...] = (2,), size: int = SIZE, late: bool = False
) -> VideoBatch:
    """Clips with ``objects[b]`` square objects each; with ``late`` the last object of clip 0 appears on frame 1."""
    generator = np.random.default_rng(0)
    clips = []
    for b, count in enumerate(objects):
        masks = np.zeros((num_frames, count, size, size), dtype=bool)
        for o in range(count):
            top = 4 + 24 * o * size // SIZE
            masks[:, o, top : top + size // 4, size // 8 : size // 2] = True
        if late and b == 0:
            masks[0, -1] = False
        frames = [torch.from_numpy(generator.standard_normal((3, size, size), dtype=np.float32)) for _ in masks]
        clips.append(
            Clip(f"video{b}", frames, masks, list(range(1, count + 1)), list(range(0, 4 * num_frames, 4)), (48, 80))
        )
    return collate_clips(clips)


def test_first_appearance() -> None:
    masks = torch.zeros(4, 3, 2, 2, dtype=torch.bool)
    masks[0, 0, 0, 0] = masks[2, 1, 1, 1] = masks[3, 1, 0, 0] = True
    assert first_appearance(masks).tolist() == [0, 2, -1]


@pytest.mark.parametrize(
    ("kind", "pt", "box", "first_labels", "first_masks"),
    [("mask", 0.0, 0.0, None, 1), ("box", 1.0, 1.0, [2, 3], 1), ("click", 1.0, 0.0, [1], 3)],
)
def test_forward_training_runs_each_prompt_kind(
    model: nn.Module, kind: str, pt: float, box: float, first_labels: list[int] | None, first_masks: int
) -> None:
    prompts = PromptConfig(
        prob_to_use_pt_input_for_train=pt,
        prob_to_use_box_input_for_train=box,
        num_init_cond_frames_for_train=1,
        num_frames_to_correct_for_train=1,
        num_correction_pt_per_frame=0,
    )
    batch = make_batch(objects=(2, 1))
    # One plan and one tracking pass for the 3 objects of both clips, as upstream.
    forward = forward_training(model, batch, prompts, plan_rng=np.random.default_rng(0))
    n = batch.num_objects
    assert forward.plan.prompt_kind(0) == kind and len(forward.frames) == 3
    first = forward.frames[0]
    points = first["multistep_point_inputs"][0]
    assert (points is None) == (first_labels is None)
    if points is not None:
        assert points["point_labels"].tolist() == [first_labels] * n
    # A box is two points (one mask out); zero or one click gives SAM's three candidate masks.
    assert first["multistep_pred_multimasks_high_res"][0].shape == (n, first_masks, SIZE, SIZE)
    if kind == "mask":  # the GT mask is used as output (+-10 logits) without the decoder
        assert torch.equal(first["pred_masks_high_res"][:, 0] > 0, batch.masks[0])
    for frame in forward.frames[1:]:  # tracked frames: no prompt, multimask tracking
        assert frame["multistep_point_inputs"] == [None]
        assert frame["multistep_pred_multimasks_high_res"][0].shape == (n, 3, SIZE, SIZE)
        assert frame["maskmem_features"].shape[0] == n


def test_correction_clicks_add_steps_on_corrected_frames(model: nn.Module) -> None:
    prompts = PromptConfig(
        prob_to_use_pt_input_for_train=1.0,
        prob_to_use_box_input_for_train=0.0,
        num_init_cond_frames_for_train=1,
        num_frames_to_correct_for_train=2,
        rand_frames_to_correct_for_train=False,
        num_correction_pt_per_frame=2,
        prob_to_sample_from_gt_for_train=0.0,
    )
    batch = make_batch(objects=(1,))
    forward = forward_training(model, batch, prompts, generator=torch.Generator().manual_seed(0))
    corrected = set(forward.plan.frames_to_add_correction_pt)
    assert len(corrected) == 2 and 0 in corrected
    for t, frame in enumerate(forward.frames):
        steps = len(frame["multistep_pred_ious"])
        assert steps == (1 + 2 if t in corrected else 1)
        assert len(frame["multistep_pred_multimasks_high_res"]) == len(frame["multistep_object_score_logits"]) == steps
        if t in corrected:
            # Each correction adds one click; the frame's first step had 1 click (frame 0) or none (tracked).
            counts = [0 if p is None else p["point_labels"].shape[1] for p in frame["multistep_point_inputs"]]
            start = 1 if t == 0 else 0
            assert counts == [start, start + 1, start + 2]
            # Multimask output only while there are at most one click.
            assert [m.shape[1] for m in frame["multistep_pred_multimasks_high_res"]][-1] == 1


def test_forward_training_rejects_wrong_image_size_and_plan(model: nn.Module) -> None:
    with pytest.raises(ValueError, match="64x64"):
        forward_training(model, make_batch(size=32), PromptConfig())
    pinned = PromptPlan(4, True, [0], [], [], 0, True, "uniform", 0.0)
    with pytest.raises(ValueError, match="pinned prompt plan has 4 frames, the batch 3"):
        forward_training(model, make_batch(num_frames=3), PromptConfig(), plan=pinned)


@pytest.fixture(scope="module")
def video_masks(model: nn.Module) -> tuple[VideoBatch, torch.Tensor]:
    model.eval()
    batch = make_batch(num_frames=4, objects=(2,), late=True)
    return batch, segment_batch(model, batch)


def test_segment_video_prompts_each_object_on_its_first_frame(video_masks: tuple[VideoBatch, torch.Tensor]) -> None:
    batch, masks = video_masks
    assert masks.shape == (4, 2, SIZE, SIZE) and masks.dtype == torch.bool
    assert torch.equal(masks[0, 0], batch.masks[0, 0])  # object 1 prompted on frame 0
    assert not masks[0, 1].any()  # object 2 not yet there
    assert torch.equal(masks[1, 1], batch.masks[1, 1])  # object 2 prompted on frame 1
    assert not (masks[:, 0] & masks[:, 1]).any()  # non-overlapping by default


def test_segment_video_output_size_and_absent_objects(model: nn.Module) -> None:
    model.eval()
    images = torch.randn(2, 3, 96, 96)  # resized to the model's 64 inside
    gt = torch.zeros(2, 2, 24, 24, dtype=torch.bool)
    gt[0, 0, 4:12, 4:12] = True
    masks = segment_video(model, images, gt, output_size=(48, 48))
    assert masks.shape == (2, 2, 48, 48)
    # The prompt is resized to the output by nearest neighbour: the 8x8 square becomes 16x16.
    assert masks[0, 0].sum() == 256 and masks[0, 0, 8:24, 8:24].all()
    assert not masks[:, 1].any()  # never visible: never predicted


def test_segment_video_resizes_frames_as_the_video_predictor(model: nn.Module) -> None:
    """Frames of another size are resized as SAM2VideoPredictor's loader (PIL bicubic, antialiased) would: the masks
    equal those of frames resized by PIL first (up to PIL's rounding to uint8)."""
    from samlab.data.transforms import normalize_images

    model.eval()
    generator = np.random.default_rng(5)
    smooth = cv2.resize(generator.integers(0, 256, (12, 20, 3), dtype=np.uint8), (160, 96), cv2.INTER_CUBIC)
    frames = np.stack([np.roll(smooth, 4 * t, axis=1) for t in range(3)])
    gt = torch.zeros(3, 1, 96, 160, dtype=torch.bool)
    gt[0, 0, 20:70, 30:110] = True

    def to_tensor(arrays: np.ndarray) -> torch.Tensor:
        return normalize_images(torch.from_numpy(np.ascontiguousarray(arrays)).permute(0, 3, 1, 2))

    pil = np.stack([np.asarray(Image.fromarray(f).resize((SIZE, SIZE), Image.BICUBIC)) for f in frames])
    raw = segment_video(model, to_tensor(frames), gt, non_overlapping=False)
    resized = segment_video(model, to_tensor(pil), gt, non_overlapping=False)
    assert raw[1:].any()
    assert (raw != resized).float().mean() < 0.01


def test_predict_batch_at_original_size(model: nn.Module) -> None:
    model.eval()
    batch = make_batch(num_frames=2, objects=(1,))
    prediction = predict_batch(model, batch)
    assert prediction.masks.shape == (2, 1, 48, 80)
    assert prediction.object_ids.tolist() == [1] and prediction.frame_indices.tolist() == [0, 4]
    with pytest.raises(ValueError, match="one video per batch"):
        segment_batch(model, make_batch(num_frames=2, objects=(1, 1)))


def prediction_for_writers() -> VideoPrediction:
    masks = torch.zeros(2, 2, 6, 8, dtype=torch.bool)
    masks[:, 0, :3] = True  # object 7 in the top half
    masks[:, 1, 2:, 4:] = True  # object 3 bottom right, overlapping object 7 on row 2
    masks[1, 1] = False  # object 3 gone on the second frame
    return VideoPrediction("cat", masks, torch.tensor([7, 3]), torch.tensor([0, 12]))


def test_davis_palette_and_label_map() -> None:
    palette = davis_palette()
    assert len(palette) == 768 and palette[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]
    labels = label_map(prediction_for_writers().masks[0].numpy(), [7, 3])
    assert labels[0, 0] == 7 and labels[2, 5] == 3 and labels[5, 0] == 0 and labels[4, 6] == 3


def test_palette_writer_round_trip(tmp_path: Path) -> None:
    prediction = prediction_for_writers()
    paths = write_palette_pngs(prediction, tmp_path / "Annotations")
    assert [p.name for p in paths] == ["00000.png", "00012.png"]
    with Image.open(paths[0]) as image:
        assert image.mode == "P" and image.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
    labels = read_label_png(paths[0])
    assert set(np.unique(labels)) == {0, 3, 7}
    # DAVIS-layout reader (frames next to it) reads back the objects by their ids.
    frames = tmp_path / "JPEGImages" / "cat"
    frames.mkdir(parents=True)
    for name in ("00000", "00012"):
        Image.fromarray(np.zeros((6, 8, 3), dtype=np.uint8)).save(frames / f"{name}.jpg")
    video = DAVISReader(tmp_path)[0]
    assert [video.frame_index(k) for k in range(video.num_frames)] == [0, 12]
    assert video.masks(0).ids() == [3, 7] and video.masks(1).ids() == [7]
    assert np.array_equal(video.masks(1).decode([7])[0], prediction.masks[1, 0].numpy())
    with pytest.raises(ValueError, match="do not fit a palette PNG"):
        write_palette_pngs(
            VideoPrediction("big", prediction.masks, torch.tensor([1, 300]), torch.tensor([0, 1])), tmp_path
        )


def test_object_writer_round_trip_through_callback(tmp_path: Path) -> None:
    prediction = prediction_for_writers()
    writer = VOSMaskWriter(tmp_path / "Annotations", layout="sav")
    writer.write_on_batch_end(None, None, prediction, None, None, 0, 0)  # type: ignore[arg-type]
    written = sorted(p.relative_to(tmp_path / "Annotations").as_posix() for p in tmp_path.rglob("*.png"))
    assert written == ["cat/003/00000.png", "cat/003/00012.png", "cat/007/00000.png", "cat/007/00012.png"]
    assert set(np.unique(read_label_png(tmp_path / "Annotations/cat/003/00000.png"))) == {0, 255}
    frames = tmp_path / "JPEGImages" / "cat"
    frames.mkdir(parents=True)
    for name in ("00000", "00012"):
        Image.fromarray(np.zeros((6, 8, 3), dtype=np.uint8)).save(frames / f"{name}.jpg")
    video = DAVISReader(tmp_path, per_object=True)[0]
    assert video.masks(0).ids() == [3, 7] and video.masks(1).ids() == [7]  # an empty PNG is an absent object
    decoded = video.masks(0).decode([7, 3])
    assert np.array_equal(decoded, prediction.masks[0].numpy())  # overlaps kept per object
    assert len(write_object_pngs(prediction, tmp_path / "again")) == 4
    with pytest.raises(ValueError, match="unknown mask layout"):
        VOSMaskWriter(tmp_path, layout="coco")  # type: ignore[arg-type]


@pytest.mark.parametrize("points", [False, True])
def test_forward_matches_official_sam2train_in_eval(model: nn.Module, points: bool) -> None:
    """Deterministic settings (eval: centre clicks, one prompted frame) give SAM 2's own training forward."""
    pytest.importorskip("training.model.sam2")
    from training.utils.data_utils import BatchedVideoDatapoint, BatchedVideoMetaData

    recipe = {"prob_to_use_pt_input_for_eval": float(points), "num_correction_pt_per_frame": 2}
    oracle = build_sam2_model(
        "sam2.1_hiera_t",
        image_size=SIZE,
        train=False,
        overrides=(
            *SMALL,
            "++model._target_=training.model.sam2.SAM2Train",
            *(f"++model.{k}={v}" for k, v in recipe.items()),
        ),
    )
    oracle.load_state_dict(model.state_dict())
    model.eval()
    batch = make_batch(num_frames=3, objects=(2,))
    datapoint = BatchedVideoDatapoint(
        img_batch=batch.images,
        obj_to_frame_idx=batch.obj_to_frame_idx,
        masks=batch.masks,
        metadata=BatchedVideoMetaData(
            unique_objects_identifier=torch.zeros(3, 2, 3, dtype=torch.long), frame_orig_size=torch.zeros(3, 2, 2)
        ),
        dict_key="test",
        batch_size=[3],
    )
    with torch.no_grad():
        expected = oracle(datapoint)
        forward = forward_training(model, batch, PromptConfig(**recipe), training=False)
    assert forward.plan.frames_to_add_correction_pt == ([0] if points else [])
    for ours, theirs in zip(forward.frames, expected):
        for key in ("multistep_pred_multimasks_high_res", "multistep_pred_ious", "multistep_object_score_logits"):
            assert len(ours[key]) == len(theirs[key])
            for a, b in zip(ours[key], theirs[key]):
                torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        if points:
            assert [p and p["point_coords"].tolist() for p in ours["multistep_point_inputs"]] == [
                p and p["point_coords"].tolist() for p in theirs["multistep_point_inputs"]
            ]


def test_segment_video_matches_sam2_video_predictor(model: nn.Module, tmp_path: Path) -> None:
    """Same weights, frames and first-frame masks: the masks of SAM 2's own VOS inference on every tracked frame."""
    predictor = build_sam2_model(
        "sam2.1_hiera_t",
        image_size=SIZE,
        train=False,
        overrides=(*SMALL, "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor"),
    )
    predictor.load_state_dict(model.state_dict())
    model.eval()
    video = tmp_path / "video"
    video.mkdir()
    generator = np.random.default_rng(3)
    for t in range(4):
        Image.fromarray(generator.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(video / f"{t:05d}.jpg")
    state = predictor.init_state(str(video))
    gt = torch.zeros(4, 2, SIZE, SIZE, dtype=torch.bool)
    gt[0, 0, 8:30, 10:40] = True
    gt[0, 1, 36:60, 20:50] = True
    for o in range(2):
        predictor.add_new_mask(state, frame_idx=0, obj_id=o + 1, mask=gt[0, o])
    with torch.no_grad():
        expected = {t: logits[:, 0] > 0 for t, _, logits in predictor.propagate_in_video(state)}
    masks = segment_video(model, state["images"], gt, output_size=(48, 80), non_overlapping=False)
    for t in range(1, 4):
        assert (masks[t] != expected[t]).float().mean() < 1e-3, t

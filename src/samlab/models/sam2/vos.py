"""SAM 2 tracking over a :class:`VideoBatch`, plain torch (the LightningModule only calls these):

- :func:`forward_training`: SAM 2's training forward (what ``SAM2Train`` does upstream): image encoder on all frames,
  one prompt plan for the batch (mask, noisy box or click on the initial conditioning frames, iterative correction
  clicks), memory-conditioned tracking of the other frames with the objects of all clips batched, outputs in the
  official multi-step layout for ``SAM2Loss``;
- :func:`segment_video` / :func:`segment_batch` / :func:`predict_batch`: semi-supervised VOS, each object prompted
  with its ground-truth mask on the first frame where it appears and tracked to the end (validation, test, predict).

The model code is the ``sam2`` package's (``SAM2Base._track_step``, ``_forward_sam_heads``, ``track_step``, …).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sam2.utils.misc import concat_points
from torch import nn

from samlab.data.batch import VideoBatch
from samlab.models.sam2.prompts import PromptConfig, PromptPlan, noisy_box_prompt, plan_prompts, sample_error_click

Features = tuple[list[torch.Tensor], list[torch.Tensor]]

# Logit given to pixels of the prompt mask on its own frame (and minus it outside), so that overlap resolution
# prefers the given ground truth over any tracked object.
PROMPT_LOGIT = 1024.0


@dataclass
class VideoPrediction:
    """Per-object masks of one video.

    ``masks``: ``[T, O, H, W]`` bool; ``object_ids``: ``[O]`` int64 dataset ids; ``frame_indices``: ``[T]`` int64
    original frame numbers; ``video_name``: the video's name.
    """

    video_name: str
    masks: torch.Tensor
    object_ids: torch.Tensor
    frame_indices: torch.Tensor


@dataclass
class TrainingForward:
    """Training forward of a batch: one prompt plan and one tracking pass for the objects of all its clips.

    ``plan``: how the batch was prompted; ``frames``: ``T`` dicts in ``SAM2Train``'s layout, per frame
    ``multistep_pred_multimasks_high_res`` (list over prompting steps of ``[O, M, S, S]`` logits, ``M`` = 3 for
    zero or one click else 1), ``multistep_pred_ious`` (``[O, M]``), ``multistep_object_score_logits``
    (``[O, 1]``), ``multistep_point_inputs`` (point prompts of each step or None), plus SAM 2's ``pred_masks``
    (``[O, 1, S/4, S/4]``), ``pred_masks_high_res`` (``[O, 1, S, S]``), ``obj_ptr``, ``maskmem_features``,
    ``maskmem_pos_enc``. ``O`` is the batch's object axis (clip after clip). One step per frame,
    ``1 + num_correction_points`` on corrected frames.
    """

    plan: PromptPlan
    frames: list[dict[str, Any]]


def forward_training(
    model: nn.Module,
    batch: VideoBatch,
    prompts: PromptConfig,
    training: bool = True,
    plan_rng: np.random.Generator | None = None,
    generator: torch.Generator | None = None,
    plan: PromptPlan | None = None,
) -> TrainingForward | None:
    """SAM 2's training forward on a batch, as ``SAM2Train.forward``; None when the batch has no object.

    ``batch.images`` must be ``[T, B, 3, S, S]`` with ``S`` the model's ``image_size`` (point coordinates and masks
    are in that pixel space). The image encoder runs once on all ``T·B`` frames; the batch then gets one prompt
    plan (:func:`plan_prompts` with ``prompts`` and ``plan_rng``; ``training`` picks the ``*_for_train`` or
    ``*_for_eval`` settings), or ``plan`` when given (a pinned plan), and the objects of all clips are tracked
    together, each on the features of its own clip: initial conditioning frames first (GT mask used as output, a
    noisy box, or a click from the GT mask; all drawn before tracking, as upstream), then the other frames in
    time order, correction clicks drawn from the error between the current prediction and the GT (or from the GT
    with the plan's probability, decided with ``plan_rng`` as upstream). ``generator``: random source of the box
    noise and clicks (any device; the global one of the batch's device when None, as upstream).
    """
    size = model.image_size
    num_frames = batch.num_frames
    if tuple(batch.images.shape[-2:]) != (size, size) or tuple(batch.masks.shape[-2:]) != (size, size):
        raise ValueError(
            f"training batches must be {size}x{size} (the model's image_size), got images "
            f"{tuple(batch.images.shape[-2:])} and masks {tuple(batch.masks.shape[-2:])}"
        )
    if batch.num_objects == 0:
        return None
    if plan is None:
        plan = plan_prompts(num_frames, prompts, rng=plan_rng, training=training)
    elif plan.num_frames != num_frames:
        raise ValueError(f"the pinned prompt plan has {plan.num_frames} frames, the batch {num_frames}")
    # Clip-major flattening, as SAM 2's BatchedVideoDatapoint.flat_img_batch: frame t of clip b is b * T + t.
    backbone_out = model.forward_image(batch.images.transpose(0, 1).flatten(0, 1))
    _, vision_feats, vision_pos, feat_sizes = model._prepare_backbone_features(backbone_out)
    flat_index = batch.obj_to_frame_idx[..., 1].long() * num_frames + batch.obj_to_frame_idx[..., 0].long()  # [T, O]

    def features_at(t: int) -> Features:
        return [x[:, flat_index[t]] for x in vision_feats], [x[:, flat_index[t]] for x in vision_pos]

    frames = track_objects(model, plan, batch.masks, features_at, feat_sizes, plan_rng, generator)
    return TrainingForward(plan=plan, frames=frames)


def track_objects(
    model: nn.Module,
    plan: PromptPlan,
    gt_masks: torch.Tensor,
    features_at: Callable[[int], Features],
    feat_sizes: list[tuple[int, int]],
    plan_rng: np.random.Generator | None = None,
    generator: torch.Generator | None = None,
) -> list[dict[str, Any]]:
    """Prompt and track ``n`` objects following ``plan`` (see :func:`forward_training`).

    ``gt_masks``: ``[T, n, S, S]`` bool; ``features_at(t)``: the backbone features and position encodings of frame
    ``t`` for the ``n`` objects in SAM 2's ``[HW, n, C]`` layout; ``feat_sizes``: their spatial sizes;
    ``plan_rng``: decides which correction clicks come from the GT (a fresh generator when None).
    Returns the ``T`` per-frame output dicts described in :class:`TrainingForward`.
    """
    num_frames = plan.num_frames
    plan_rng = plan_rng if plan_rng is not None else np.random.default_rng()
    initial = {t: _initial_prompt(plan, t, gt_masks[t], generator) for t in plan.init_cond_frames}
    memory: dict[str, dict[int, dict[str, Any]]] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    for t in plan.processing_order:
        vision_feats, vision_pos = features_at(t)
        gt = gt_masks[t]
        point_inputs, mask_inputs = initial.get(t, (None, None))
        is_init = t in plan.init_cond_frames
        out, sam_outputs, high_res_features, pix_feat = model._track_step(
            t, is_init, vision_feats, vision_pos, feat_sizes, point_inputs, mask_inputs, memory, num_frames, False, None
        )
        steps = _StepRecorder(point_inputs, sam_outputs)
        if t in plan.frames_to_add_correction_pt:
            for _ in range(plan.num_correction_points):
                from_gt = plan.prob_to_sample_from_gt > 0 and plan_rng.random() < plan.prob_to_sample_from_gt
                pred = None if from_gt else steps.high_res_masks[:, 0] > 0
                coords, labels = sample_error_click(gt, pred, plan.point_sampling, generator)
                point_inputs = concat_points(point_inputs, coords, labels)
                sam_outputs = model._forward_sam_heads(
                    backbone_features=pix_feat,
                    point_inputs=point_inputs,
                    mask_inputs=steps.low_res_masks,
                    high_res_features=high_res_features,
                    multimask_output=model._use_multimask(is_init, point_inputs),
                )
                steps.add(point_inputs, sam_outputs)
        out.update(steps.layout())
        model._encode_memory_in_output(
            vision_feats, feat_sizes, point_inputs, True, steps.high_res_masks, steps.object_score_logits, out
        )
        memory["cond_frame_outputs" if plan.is_cond_frame(t) else "non_cond_frame_outputs"][t] = out
    outputs = {**memory["cond_frame_outputs"], **memory["non_cond_frame_outputs"]}
    return [outputs[t] for t in range(num_frames)]


def _initial_prompt(
    plan: PromptPlan, frame: int, gt: torch.Tensor, generator: torch.Generator | None
) -> tuple[dict[str, torch.Tensor] | None, torch.Tensor | None]:
    """``(point_inputs, mask_inputs)`` of ``frame`` for SAM 2's ``_track_step``: GT mask, noisy box, click or none."""
    kind = plan.prompt_kind(frame)
    if kind == "mask":
        return None, gt[:, None]
    if kind == "box":
        coords, labels, _ = noisy_box_prompt(gt, generator=generator)
        return {"point_coords": coords, "point_labels": labels}, None
    if kind == "click":
        coords, labels = sample_error_click(gt, None, plan.point_sampling, generator)
        return {"point_coords": coords, "point_labels": labels}, None
    return None, None


class _StepRecorder:
    """The SAM head outputs of each prompting step of one frame, and the latest step's masks."""

    def __init__(self, point_inputs: dict[str, torch.Tensor] | None, sam_outputs: tuple) -> None:
        self.multimasks: list[torch.Tensor] = []
        self.ious: list[torch.Tensor] = []
        self.scores: list[torch.Tensor] = []
        self.points: list[dict[str, torch.Tensor] | None] = []
        self.add(point_inputs, sam_outputs)

    def add(self, point_inputs: dict[str, torch.Tensor] | None, sam_outputs: tuple) -> None:
        _, high_res_multimasks, ious, low_res, high_res, obj_ptr, object_score_logits = sam_outputs
        self.multimasks.append(high_res_multimasks)
        self.ious.append(ious)
        self.scores.append(object_score_logits)
        self.points.append(point_inputs)
        self.low_res_masks, self.high_res_masks, self.obj_ptr = low_res, high_res, obj_ptr
        self.object_score_logits = object_score_logits

    def layout(self) -> dict[str, Any]:
        return {
            "multistep_pred_multimasks_high_res": self.multimasks,
            "multistep_pred_ious": self.ious,
            "multistep_object_score_logits": self.scores,
            "multistep_point_inputs": self.points,
            "pred_masks": self.low_res_masks,
            "pred_masks_high_res": self.high_res_masks,
            "obj_ptr": self.obj_ptr,
        }


def first_appearance(masks: torch.Tensor) -> torch.Tensor:
    """Index of the first frame where each object is visible.

    ``masks``: ``[T, O, H, W]`` bool. Returns ``[O]`` int64, ``-1`` for an object absent from every frame.
    """
    visible = masks.flatten(2).any(dim=2)  # [T, O]
    first = visible.to(torch.int64).argmax(dim=0)
    return torch.where(visible.any(dim=0), first, torch.full_like(first, -1))


class _ObjectGroup:
    """Objects that start on the same frame, tracked together as one SAM 2 batch with their own memory bank."""

    def __init__(self, start: int, objects: torch.Tensor) -> None:
        self.start = start
        self.objects = objects
        self.memory: dict[str, dict[int, dict]] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}

    def forget_before(self, frame: int) -> None:
        """Drop the non-conditioning outputs of frames before ``frame`` (no longer reachable by memory or pointers)."""
        old = [t for t in self.memory["non_cond_frame_outputs"] if t < frame]
        for t in old:
            del self.memory["non_cond_frame_outputs"][t]


@torch.no_grad()
def segment_video(
    model: nn.Module,
    images: torch.Tensor,
    gt_masks: torch.Tensor,
    output_size: tuple[int, int] | None = None,
    non_overlapping: bool = True,
    encoder_batch_size: int = 4,
) -> torch.Tensor:
    """Semi-supervised VOS on one video with a ``SAM2Base`` ``model`` in eval mode, as SAM 2's VOS inference.

    ``images``: ``[T, 3, H, W]`` float normalised frames; they are resized to the model's square ``image_size`` when
    they have another size (bicubic, antialiased: PIL's resize, as SAM 2's video predictor loads frames).
    ``gt_masks``: ``[T, O, H', W']`` bool; only each object's mask on its first visible frame is used, as the prompt.
    ``output_size``: ``(h, w)`` of the returned masks, default ``(H', W')``.

    Returns ``[T, O, h, w]`` bool: all false before an object's prompt frame, the prompt mask itself on it (resized
    by nearest neighbour), and SAM 2's tracked mask (low-resolution logits upsampled bilinearly, > 0) after.
    With ``non_overlapping`` a pixel claimed by several objects goes to the one with the highest logit (a label
    map, as DAVIS and SA-V store). Objects that never appear stay empty. Objects starting on the same frame are
    tracked as one batch with their own memory (SAM 2's ``vos_inference`` tracks objects independently too); as in
    ``SAM2VideoPredictor``, the prompt frame's memory comes from its low-resolution output and memories are kept
    in bfloat16, so the masks are those of SAM 2's own VOS inference. The image encoder runs on
    ``encoder_batch_size`` frames at once.
    """
    num_frames, num_objects = gt_masks.shape[:2]
    if model.training:
        raise ValueError("segment_video needs the model in eval mode (model.eval())")
    if images.shape[0] != num_frames:
        raise ValueError(f"images have {images.shape[0]} frames but gt_masks {num_frames}")
    size = model.image_size
    out_h, out_w = output_size if output_size is not None else tuple(gt_masks.shape[-2:])
    device = images.device
    starts = first_appearance(gt_masks)
    groups = [_ObjectGroup(int(s), torch.nonzero(starts == s).flatten()) for s in torch.unique(starts) if s >= 0]
    # Memory frames reach back num_maskmem strides, object pointers max_obj_ptrs_in_encoder frames.
    horizon = max(model.num_maskmem * model.memory_temporal_stride_for_eval, model.max_obj_ptrs_in_encoder) + 1

    features: dict[int, tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[int, int]]]] = {}
    results = []
    for t in range(num_frames):
        logits = torch.full((num_objects, out_h, out_w), -PROMPT_LOGIT, device=device)
        for group in groups:
            if t < group.start:
                continue
            if t not in features:
                features.clear()
                features.update(_encode_frames(model, images, t, min(t + encoder_batch_size, num_frames), size))
            n = len(group.objects)
            vision_feats = [x.repeat(1, n, 1) for x in features[t][0]]
            vision_pos = [x.repeat(1, n, 1) for x in features[t][1]]
            feat_sizes = features[t][2]
            is_prompt = t == group.start
            prompt = gt_masks[t, group.objects].to(device)
            mask_inputs = _prompt_input(prompt, size) if is_prompt else None
            out = model.track_step(
                frame_idx=t,
                is_init_cond_frame=is_prompt,
                current_vision_feats=vision_feats,
                current_vision_pos_embeds=vision_pos,
                feat_sizes=feat_sizes,
                point_inputs=None,
                mask_inputs=mask_inputs,
                output_dict=group.memory,
                num_frames=num_frames,
                run_mem_encoder=not is_prompt,
            )
            if is_prompt:
                # As SAM2VideoPredictor: the prompt frame's memory is encoded from its low-resolution output
                # upsampled, not from the exact mask, so that scores match the official VOS inference.
                high_res = F.interpolate(out["pred_masks"], (size, size), mode="bilinear", align_corners=False)
                out["maskmem_features"], out["maskmem_pos_enc"] = model._encode_new_memory(
                    vision_feats, feat_sizes, high_res, out["object_score_logits"], is_mask_from_pts=True
                )
            # SAM2VideoPredictor keeps memories in bfloat16 (half the memory of long videos; same scores).
            out["maskmem_features"] = out["maskmem_features"].to(torch.bfloat16)
            if is_prompt:
                group.memory["cond_frame_outputs"][t] = out
                prompt_out = resize_masks(prompt, (out_h, out_w))
                logits[group.objects] = torch.where(prompt_out, PROMPT_LOGIT, -PROMPT_LOGIT)
            else:
                group.memory["non_cond_frame_outputs"][t] = out
                group.forget_before(t - horizon)
                upsampled = F.interpolate(
                    out["pred_masks"].float(), (out_h, out_w), mode="bilinear", align_corners=False
                )
                logits[group.objects] = upsampled[:, 0]
        results.append(_binarize(logits, non_overlapping))
    if not results:
        return torch.zeros(0, num_objects, out_h, out_w, dtype=torch.bool, device=device)
    return torch.stack(results)


def segment_batch(
    model: nn.Module,
    batch: VideoBatch,
    output_size: tuple[int, int] | None = None,
    non_overlapping: bool = True,
    encoder_batch_size: int = 4,
) -> torch.Tensor:
    """:func:`segment_video` on a whole-video :class:`VideoBatch` of one clip (``B = 1``).

    Returns ``[T, O, h, w]`` bool, ``(h, w)`` = ``output_size`` or the batch's frame size.
    """
    if batch.batch_size != 1:
        raise ValueError(f"VOS inference takes one video per batch, got {batch.batch_size} ({batch.video_names})")
    return segment_video(
        model,
        batch.images[:, 0],
        batch.masks,
        output_size=output_size,
        non_overlapping=non_overlapping,
        encoder_batch_size=encoder_batch_size,
    )


def predict_batch(model: nn.Module, batch: VideoBatch, non_overlapping: bool = True) -> VideoPrediction:
    """:func:`segment_batch` at the video's original resolution (``batch.orig_sizes``), packed for the writers."""
    orig_h, orig_w = (int(v) for v in batch.orig_sizes[0])
    masks = segment_batch(model, batch, output_size=(orig_h, orig_w), non_overlapping=non_overlapping)
    return VideoPrediction(
        video_name=batch.video_names[0],
        masks=masks,
        object_ids=batch.object_ids,
        frame_indices=batch.frame_indices[0],
    )


def _encode_frames(
    model: nn.Module, images: torch.Tensor, begin: int, end: int, size: int
) -> dict[int, tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[int, int]]]]:
    """Backbone features of frames ``begin..end-1``: per frame ``(vision_feats, vision_pos_embeds, feat_sizes)``
    in SAM 2's flattened ``[HW, 1, C]`` layout."""
    chunk = images[begin:end]
    if chunk.shape[-2:] != (size, size):
        # bicubic with antialiasing: PIL's Image.resize, as SAM2VideoPredictor loads frames (and EvalTransform)
        chunk = F.interpolate(chunk, (size, size), mode="bicubic", align_corners=False, antialias=True)
    backbone_out = model.forward_image(chunk)
    _, vision_feats, vision_pos, feat_sizes = model._prepare_backbone_features(backbone_out)
    return {
        begin + i: ([x[:, i : i + 1] for x in vision_feats], [x[:, i : i + 1] for x in vision_pos], feat_sizes)
        for i in range(end - begin)
    }


def _prompt_input(masks: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, H, W]`` bool prompt masks → ``[N, 1, size, size]`` float 0/1 model input, resized as SAM2VideoPredictor
    does (bilinear with antialiasing, then >= 0.5)."""
    masks = masks[:, None].float()
    if tuple(masks.shape[-2:]) != (size, size):
        masks = F.interpolate(masks, (size, size), mode="bilinear", align_corners=False, antialias=True)
        masks = (masks >= 0.5).float()
    return masks


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[..., H, W]`` bool masks resized by nearest neighbour to ``size`` = ``(h, w)``: ``[..., h, w]`` bool."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.bool()
    flat = masks.reshape(-1, 1, *masks.shape[-2:]).float()
    return (F.interpolate(flat, size, mode="nearest-exact") > 0.5).reshape(*masks.shape[:-2], *size)


def _binarize(logits: torch.Tensor, non_overlapping: bool) -> torch.Tensor:
    """``[O, H, W]`` logits → bool masks (> 0), optionally keeping only the highest-logit object per pixel."""
    masks = logits > 0
    if non_overlapping and logits.shape[0] > 1:
        winner = logits.argmax(dim=0, keepdim=True)
        masks &= winner == torch.arange(logits.shape[0], device=logits.device)[:, None, None]
    return masks

"""``SAMPromptModule``: fine-tune segment_anything's SAM on instance masks with prompts drawn from ground truth.

Batches are one-frame :class:`VideoBatch` es (``T = 1``) whose images went through SAM's geometry (longest side
``image_size``, padded; :mod:`samlab.data.instance_transforms`). The torch parts live in :mod:`.model` (building,
checkpoints, one decode), :mod:`.prompts`, :mod:`.losses` and :mod:`.tta`; evaluation is
:class:`samlab.metrics.coco.COCOPromptEval` on the data module's COCO ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from pycocotools.coco import COCO

from samlab.data.batch import VideoBatch
from samlab.data.instance_transforms import resize_longest_side_shape
from samlab.metrics.coco import (
    COCOPromptEval,
    detections_by_image,
    image_ids_by_name,
    load_coco_gt,
    mask_results,
)
from samlab.models.sam.losses import SAMPromptLoss, dice_from_sums, soft_dice_sums
from samlab.models.sam.model import EncoderSize, ImageFeatures, build_sam, decode, embed_images, freeze
from samlab.models.sam.prompts import (
    PromptConfig,
    Prompts,
    box_prompts,
    correction_click,
    evaluation_prompts,
    sample_prompts,
)
from samlab.models.sam.tta import TTAView, tta_views, unview_logits, view_image, view_prompts
from samlab.models.sam2.model import build_sam2_model
from samlab.models.sam2.optim import cosine_over_run
from samlab.visualize import draw_boxes, draw_points, frame_strip, object_colors, overlay_masks, to_uint8_image

LOSS_KEYS = ("loss_focal", "loss_dice", "loss_iou")
LOGGED_STATS = ("segm_AP", "segm_AP50", "segm_AP75", "bbox_AP", "bbox_AP50", "mIoU")


@dataclass
class ImagePrediction:
    """Prompted predictions of one image: ``n`` oracle-prompted objects or ``n`` detections.

    ``image_id``: the COCO image id; ``objects``: ``[n]`` indices into the batch's object axis (oracle prompts;
    objects with an empty input mask are left out), empty with detector prompts; ``detections``: the ``n``
    detections that prompted (:func:`samlab.metrics.coco.detections_by_image` entries), empty with oracle prompts;
    ``prompts``: the ``n`` prompts in input pixels; ``candidates``: ``[n, M, H, W]`` bool, every mask the decoder
    answered (``M`` = 3 with multimask output, else 1) at the original image size; ``candidate_scores``: ``[n, M]``
    float32 predicted IoUs (both averaged over TTA views); ``best``: ``[n]`` the candidate with the highest
    predicted IoU.
    """

    image_id: int
    objects: torch.Tensor
    detections: list[dict[str, Any]]
    prompts: Prompts
    candidates: torch.Tensor
    candidate_scores: torch.Tensor
    best: torch.Tensor

    @property
    def masks(self) -> torch.Tensor:
        """``[n, H, W]`` bool: the best candidate of each prompt."""
        rows = torch.arange(len(self.best), device=self.best.device)
        return self.candidates[rows, self.best]

    @property
    def scores(self) -> torch.Tensor:
        """``[n]`` float32: the predicted IoU of the best candidate."""
        rows = torch.arange(len(self.best), device=self.best.device)
        return self.candidate_scores[rows, self.best]


def step_lr_factor(
    step: int, warmup_steps: int, warmup_factor: float, milestones: list[int], gamma: float = 0.1
) -> float:
    """Detectron2's ``WarmupParamScheduler`` over a ``MultiStepParamScheduler``: linear warm-up from
    ``warmup_factor`` to 1 over ``warmup_steps``, times ``gamma`` per milestone (optimiser step) reached."""
    warm = 1.0
    if step < warmup_steps:
        alpha = step / warmup_steps
        warm = warmup_factor * (1 - alpha) + alpha
    return warm * gamma ** sum(step >= m for m in milestones)


class SAMPromptModule(LightningModule):
    """Prompted fine-tuning of SAM (ViT-B/L/H) and its oracle-prompt COCO evaluation.

    Training: every object of every image gets prompts from its ground truth (:class:`PromptConfig`: jittered box,
    clicks, or a mix, then optional correction clicks); the image embedding is computed once per image and the
    objects are decoded ``prompt_chunk_size`` at a time; the loss is :class:`SAMPromptLoss` (20 focal + dice + IoU
    MSE, best of three masks for single clicks), averaged over objects and summed over correction steps.
    Validation/test: each GT instance is predicted from its oracle prompt (``PromptConfig.eval_mode``: its COCO box,
    that box's centre or its mask's centre click), or each detection of a ``detections`` file from its box, mapped
    back to the original image size, and scored by ``COCOeval`` (``val/segm_AP``, ``val/bbox_AP``, ...) over the
    evaluated images and mean IoU (``val/mIoU``, oracle prompts) against the data module's COCO annotations.
    Prediction returns COCO results entries (see :class:`samlab.models.sam.writers.COCOResultsWriter`).

    Args:
        variant: ``vit_b``, ``vit_l`` or ``vit_h`` (``backend: sam``); a SAM 2 variant such as ``sam2.1_hiera_b+``
            (``backend: sam2``).
        image_size: square input side (multiple of 16; of 32 for SAM 2), linked to the data's by the CLI.
        checkpoint: official SAM ``.pth`` / SAM 2 ``.pt`` or samlab Lightning checkpoint (local path); None = random
            init.
        backend: ``"sam"`` (segment_anything) or ``"sam2"`` (SAM 2's image path: its image encoder, prompt encoder
            and mask decoder with high-resolution features, as ``SAM2ImagePredictor``).
        encoder: other encoder sizes than the variant's (``embed_dim``, ``depth``, ``num_heads``,
            ``global_attn_indexes``), for tiny test models (``backend: sam``).
        model_overrides: hydra overrides of the SAM 2 model config (``backend: sam2``).
        freeze_image_encoder / freeze_prompt_encoder / freeze_mask_decoder: stop training these parts.
        prompts: prompt sampling; ``PromptConfig()`` (jittered boxes) when None.
        prompt_chunk_size: objects per mask-decoder call (bounds the decoder's memory; training memory also grows
            with the objects per image, which the data module's ``max_num_objects`` caps).
        loss_weights: ``SAMPromptLoss`` weights ``weight_focal``, ``weight_dice``, ``weight_iou`` (20, 1, 1).
        dice_reduction: ``"object"`` (a Dice loss per object, averaged over objects) or ``"image"`` (one soft Dice
            over all objects of an image, ``1 - (2 sum(p t) + 1e-6) / (sum(p) + sum(t) + 1e-6)``, averaged over the
            images: the Detectron2-SAM integration's loss).
        lr: AdamW peak learning rate.
        weight_decay: AdamW weight decay (not on biases, norms and the absolute position table).
        decay_biases: decay the biases too (Detectron2's ``get_default_optimizer_params`` exempts only norms and
            the position tables).
        warmup_steps: linear warm-up steps, then cosine decay to ``min_lr_ratio * lr`` over the run.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        lr_milestones: optimiser steps at which the learning rate is multiplied by ``lr_gamma`` instead of the
            cosine decay (Detectron2's multi-step schedule); warm-up then starts at ``warmup_factor * lr``.
        lr_gamma / warmup_factor: see ``lr_milestones``.
        detections: a COCO results JSON with a ``bbox`` per result (a detector's output on the evaluation images):
            validation, test and prediction prompt with its boxes (``prompts.eval_mode`` ``box`` or
            ``box_center``) instead of the ground truth's, and the results take the detection's category, so the AP
            is the detector + SAM pipeline's (not an oracle's).
        result_score: the COCO score of a result: ``"predicted_iou"`` (SAM's IoU prediction) or ``"constant"``
            (1.0); with detections it is multiplied by the detection's score.
        predict_all_masks: ``predict`` writes the three masks the decoder answers to every prompt (needs
            ``prompts.multimask: always``), each a results entry with its ``mask_index`` and its own score, instead
            of the best one.
        tta_scales: content scales in (0, 1] of the test-time views (validation, test, predict); ``[1.0]`` = none.
        tta_hflip: also predict each view flipped left-right; the views' probabilities are averaged.
        seed: seed of the prompt sampling (offset by the rank).
    """

    def __init__(
        self,
        variant: str = "vit_b",
        image_size: int = 1024,
        checkpoint: str | None = None,
        backend: Literal["sam", "sam2"] = "sam",
        encoder: EncoderSize | None = None,
        model_overrides: list[str] | None = None,
        freeze_image_encoder: bool = True,
        freeze_prompt_encoder: bool = False,
        freeze_mask_decoder: bool = False,
        prompts: PromptConfig | None = None,
        prompt_chunk_size: int = 32,
        loss_weights: dict[str, float] | None = None,
        dice_reduction: Literal["object", "image"] = "object",
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        decay_biases: bool = False,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
        lr_milestones: list[int] | None = None,
        lr_gamma: float = 0.1,
        warmup_factor: float = 0.001,
        detections: str | None = None,
        result_score: Literal["predicted_iou", "constant"] = "predicted_iou",
        predict_all_masks: bool = False,
        tta_scales: list[float] | None = None,
        tta_hflip: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(prompts, dict):  # as stored in the hyper-parameters of a checkpoint
            prompts = PromptConfig(**prompts)
        if isinstance(encoder, dict):
            encoder = EncoderSize(**{**encoder, "global_attn_indexes": tuple(encoder["global_attn_indexes"])})
        self.save_hyperparameters(ignore=["prompts", "encoder"])
        self.prompts = prompts if prompts is not None else PromptConfig()
        # Plain dicts keep checkpoints loadable with torch.load(weights_only=True).
        self.hparams["prompts"] = vars(self.prompts).copy()
        self.hparams["encoder"] = (
            None if encoder is None else {**vars(encoder), "global_attn_indexes": list(encoder.global_attn_indexes)}
        )
        if prompt_chunk_size < 1:
            raise ValueError(f"prompt_chunk_size must be >= 1, got {prompt_chunk_size}")
        if dice_reduction not in ("object", "image"):
            raise ValueError(f"dice_reduction must be 'object' or 'image', got {dice_reduction!r}")
        if result_score not in ("predicted_iou", "constant"):
            raise ValueError(f"result_score must be 'predicted_iou' or 'constant', got {result_score!r}")
        if predict_all_masks and self.prompts.multimask != "always":
            raise ValueError("predict_all_masks writes the decoder's three masks: set prompts.multimask to 'always'")
        if detections is not None and self.prompts.evaluation_mode == "mask_center":
            raise ValueError("detections prompt with boxes: set prompts.eval_mode to 'box' or 'box_center'")
        self.views = tta_views(tta_scales or [1.0], tta_hflip)
        if backend == "sam":
            self.model = build_sam(variant, image_size=image_size, checkpoint=checkpoint, encoder=encoder)
        elif backend == "sam2":
            if encoder is not None:
                raise ValueError("encoder sizes apply to backend 'sam'; narrow SAM 2 with model_overrides")
            self.model = build_sam2_model(
                variant, image_size, checkpoint, train=True, overrides=tuple(model_overrides or ()), drop_path_rate=0.0
            )
        else:
            raise ValueError(f"backend must be 'sam' or 'sam2', got {backend!r}")
        freeze(self.model, freeze_image_encoder, freeze_prompt_encoder, freeze_mask_decoder)
        self.loss = SAMPromptLoss(**(loss_weights or {}))
        self._generator: torch.Generator | None = None
        self._gt: dict[str, COCO] = {}
        self._detections: dict[int, list[dict[str, Any]]] | None = None
        self._image_ids: dict[int, dict[str, int]] = {}
        self.evaluators: dict[str, COCOPromptEval] = {}

    # ----------------------------------------------------------------------------------------------- pieces
    def generator(self) -> torch.Generator:
        """The prompt-sampling generator on the module's device, seeded with ``seed + global_rank`` on first use."""
        if self._generator is None or self._generator.device != self.device:
            rank = self.global_rank if self._trainer is not None else 0
            self._generator = torch.Generator(device=self.device).manual_seed(self.hparams.seed + rank)
        return self._generator

    def embed(self, images: torch.Tensor) -> ImageFeatures:
        """``[B, 3, S, S]`` normalised images to their :class:`ImageFeatures` (no graph when the image encoder is
        frozen)."""
        if any(p.requires_grad for p in self.model.image_encoder.parameters()) and torch.is_grad_enabled():
            return embed_images(self.model, images)
        with torch.no_grad():
            return embed_images(self.model, images)

    def _images(self, batch: VideoBatch) -> torch.Tensor:
        if batch.num_frames != 1:
            raise ValueError(f"SAMPromptModule takes image batches (T = 1), got T = {batch.num_frames}")
        size = self.hparams.image_size
        if tuple(batch.images.shape[-2:]) != (size, size):
            raise ValueError(
                f"images are {tuple(batch.images.shape[-2:])}, the model takes {size} x {size}: give the data "
                "transforms the resolution of data image_size"
            )
        return batch.images[0]

    def _upsample(self, logits: torch.Tensor) -> torch.Tensor:
        size = self.hparams.image_size
        return F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)

    def _chunks(self, num: int) -> list[slice]:
        size = self.hparams.prompt_chunk_size
        return [slice(start, min(start + size, num)) for start in range(0, num, size)]

    # ---------------------------------------------------------------------------------------------- training
    def _train_group(
        self, features: ImageFeatures, prompts: Prompts, targets: torch.Tensor, multimask: bool
    ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """Loss sums of one decoder group with its correction rounds, and per round the soft-Dice sums
        ``[sum(p t), sum(p) + sum(t)]`` of the trained masks (for ``dice_reduction="image"``)."""
        logits, iou_pred = decode(self.model, features, prompts, None, multimask)
        up = self._upsample(logits)
        losses, best = self.loss(up, iou_pred, targets)
        rows = torch.arange(len(prompts), device=logits.device)
        dice_sums = [soft_dice_sums(up[rows, best], targets)]
        low_res = logits[rows, best][:, None]
        for _ in range(self.prompts.num_correction_steps):
            # The click comes from the current prediction, the gradient does not flow through the mask prompt
            # (as SAM's and SAM 2's interactive training).
            pred = self._upsample(low_res.detach())[:, 0] > 0
            prompts = prompts.add_points(*correction_click(targets, pred, self.generator()))
            logits, iou_pred = decode(self.model, features, prompts, low_res.detach(), multimask=False)
            up = self._upsample(logits)
            step, _ = self.loss(up, iou_pred, targets)
            losses = {key: losses[key] + step[key] for key in losses}
            dice_sums.append(soft_dice_sums(up[:, 0], targets))
            low_res = logits
        return losses, dice_sums

    def training_losses(self, batch: VideoBatch) -> dict[str, torch.Tensor]:
        """``{"loss", "loss_focal", "loss_dice", "loss_iou"}`` of a batch, each averaged over its objects (the
        Dice loss over its images with ``dice_reduction="image"``)."""
        images = self._images(batch)
        features = self.embed(images)
        sums: dict[str, torch.Tensor] = {}
        image_dice, num_images = 0.0, 0
        for b in range(batch.batch_size):
            objects = batch.objects_of(b)
            if objects.numel() == 0:
                continue
            targets = batch.masks[0, objects]
            prompts = sample_prompts(targets, self.prompts, self.generator())
            rounds: list[torch.Tensor] = []
            for chunk in self._chunks(len(objects)):
                chunk_prompts, chunk_targets = prompts.select(chunk), targets[chunk]
                for index, multimask in chunk_prompts.groups(self.prompts.multimask):
                    group, dice_sums = self._train_group(
                        features.image(b), chunk_prompts.select(index), chunk_targets[index], multimask
                    )
                    sums = {key: sums.get(key, 0.0) + value for key, value in group.items()}
                    rounds = dice_sums if not rounds else [r + d for r, d in zip(rounds, dice_sums, strict=True)]
            image_dice = image_dice + sum(dice_from_sums(r) for r in rounds)
            num_images += 1
        out = {key: value / max(batch.num_objects, 1) for key, value in sums.items()}
        if self.hparams.dice_reduction == "image" and num_images:
            weights = self.loss
            out["loss_dice"] = image_dice / num_images
            out["loss"] = (
                weights.weight_focal * out["loss_focal"]
                + weights.weight_dice * out["loss_dice"]
                + weights.weight_iou * out["loss_iou"]
            )
        return out

    def training_step(self, batch: VideoBatch, batch_idx: int) -> torch.Tensor | None:
        """Prompted forward and loss of a batch; returns the loss (None, with a warning, for a batch without
        objects)."""
        size = batch.batch_size
        self.log(
            "data/skipped", float(batch.num_skipped), on_step=False, on_epoch=True, reduce_fx="sum", batch_size=size
        )
        if batch.num_objects == 0:
            rank_zero_warn(f"training batch {batch_idx} ({batch.video_names}) has no object; step skipped")
            return None
        losses = self.training_losses(batch)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            values = ", ".join(f"{key}={float(value):.4g}" for key, value in losses.items())
            raise FloatingPointError(
                f"non-finite loss at step {self.global_step} on images {batch.video_names}: {values}"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log_dict({f"train/{key}": losses[key] for key in LOSS_KEYS}, batch_size=size)
        return loss

    # ------------------------------------------------------------------------------------------ prediction
    def _predict_view(
        self, image: torch.Tensor, prompts: Prompts, valid: tuple[int, int], view: TTAView
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[n, M, h, w]`` over the valid region and predicted IoUs ``[n, M]`` of one TTA view of one image
        (``M`` = 3 when ``prompts.multimask`` asks the decoder for three masks for every prompt, else 1: of the
        three answers to a lone click only the best, SAM's convention)."""
        features = self.embed(view_image(image, valid, view)[None])
        moved = view_prompts(prompts, valid, view)
        num_masks = 3 if self.prompts.multimask == "always" else 1
        logits = image.new_zeros((len(prompts), num_masks, *valid))
        scores = image.new_zeros((len(prompts), num_masks))
        for chunk in self._chunks(len(prompts)):
            chunk_prompts = moved.select(chunk)
            rows = torch.arange(chunk.start, chunk.stop, device=image.device)
            for index, multimask in chunk_prompts.groups(self.prompts.multimask):
                low_res, iou_pred = decode(self.model, features, chunk_prompts.select(index), None, multimask)
                if low_res.shape[1] != num_masks:  # three answers to a lone click: keep the best
                    best = iou_pred.argmax(dim=1, keepdim=True)
                    pick = torch.arange(len(best), device=best.device)[:, None]
                    low_res, iou_pred = low_res[pick, best], iou_pred.gather(1, best)
                logits[rows[index]] = unview_logits(low_res, self.hparams.image_size, valid, view)
                scores[rows[index]] = iou_pred
        return logits, scores

    def detections(self, gt: COCO) -> dict[int, list[dict[str, Any]]]:
        """The ``detections`` file's boxes by image id (read once, checked against the ground truth ``gt``)."""
        if self._detections is None:
            self._detections = detections_by_image(gt, self.hparams.detections)
        return self._detections

    def image_ids(self, gt: COCO) -> dict[str, int]:
        """The image id of each image name of ``gt`` (:func:`samlab.metrics.coco.image_ids_by_name`), once per
        ground truth."""
        if id(gt) not in self._image_ids:
            self._image_ids[id(gt)] = image_ids_by_name(gt)
        return self._image_ids[id(gt)]

    @torch.no_grad()
    def predict_objects(self, batch: VideoBatch, gt: COCO) -> list[ImagePrediction]:
        """Prompted masks of a batch at the original image sizes, one entry per image.

        Prompts (``PromptConfig.evaluation_mode``): from each GT instance of the batch (its COCO box in ``gt``
        scaled to the input, that box's centre, or its mask's centre), or, with ``detections``, from the image's
        detections. With several TTA views the sigmoid probabilities are averaged at the original size and
        thresholded at 0.5.
        """
        images = self._images(batch)
        mode = self.prompts.evaluation_mode
        image_ids = self.image_ids(gt)
        out = []
        for b in range(batch.batch_size):
            height, width = (int(v) for v in batch.orig_sizes[b])
            valid = resize_longest_side_shape(height, width, self.hparams.image_size)
            scale = images.new_tensor([valid[1] / width, valid[0] / height]).repeat(2)
            image_id = image_ids[batch.video_names[b]]
            objects = batch.objects_of(b)
            detections: list[dict[str, Any]] = []
            if self.hparams.detections is not None:
                objects = objects[:0]
                detections = self.detections(gt).get(image_id, [])
                boxes = images.new_tensor([d["bbox"] for d in detections]).reshape(-1, 4)
                masks = None
            else:
                objects = objects[batch.masks[0, objects].flatten(1).any(dim=1)]
                boxes = images.new_tensor([gt.anns[int(i)]["bbox"] for i in batch.object_ids[objects]]).reshape(-1, 4)
                masks = batch.masks[0, objects]
            boxes = torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1) * scale  # xywh -> input xyxy
            prompts = evaluation_prompts(mode, boxes, masks) if len(boxes) else box_prompts(boxes)
            count = len(prompts)
            num_masks = 3 if self.prompts.multimask == "always" else 1
            probs = images.new_zeros((count, num_masks, height, width))
            scores = images.new_zeros((count, num_masks))
            if count:
                for view in self.views:
                    logits, view_scores = self._predict_view(images[b], prompts, valid, view)
                    probs += F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False).sigmoid()
                    scores += view_scores
            scores = scores / len(self.views)
            out.append(
                ImagePrediction(
                    image_id=image_id,
                    objects=objects,
                    detections=detections,
                    prompts=prompts,
                    candidates=probs / len(self.views) > 0.5,
                    candidate_scores=scores,
                    best=scores.argmax(dim=1) if count else scores.new_zeros(0, dtype=torch.int64),
                )
            )
        return out

    def coco_gt(self, split: str) -> COCO:
        """The COCO ground truth of the data module's ``split`` (its reader's ``ann_file``), loaded once."""
        datamodule = getattr(self.trainer, "datamodule", None)
        dataset = datamodule.dataset(split) if datamodule is not None and hasattr(datamodule, "dataset") else None
        ann_file = getattr(getattr(dataset, "videos", None), "ann_file", None)
        if ann_file is None:
            raise ValueError(
                f"SAMPromptModule evaluates against COCO annotations: the '{split}' data must come from a "
                "COCODataModule (a reader with an ann_file)"
            )
        key = str(ann_file)
        if key not in self._gt:
            self._gt[key] = load_coco_gt(ann_file)
        return self._gt[key]

    def result_scores(self, prediction: ImagePrediction, scores: torch.Tensor) -> list[float]:
        """The COCO scores of ``scores`` (``[n]`` predicted IoUs of ``prediction``'s prompts) as ``result_score``
        says, times the detections' scores with detector prompts."""
        values = scores.float().cpu()
        if self.hparams.result_score == "constant":
            values = torch.ones_like(values)
        if prediction.detections:
            values = values * torch.tensor([float(d["score"]) for d in prediction.detections])
        return values.tolist()

    def _evaluate(self, batch: VideoBatch, stage: str) -> list[ImagePrediction]:
        split = "val" if stage == "val" else "test"
        if stage not in self.evaluators:
            self.evaluators[stage] = COCOPromptEval(self.coco_gt(split))
        evaluator = self.evaluators[stage]
        predictions = self.predict_objects(batch, evaluator.gt)
        for prediction in predictions:
            masks, scores = prediction.masks.cpu().numpy(), self.result_scores(prediction, prediction.scores)
            if prediction.detections:
                evaluator.update_detections(prediction.detections, masks, scores)
            elif len(prediction.objects):
                evaluator.update(batch.object_ids[prediction.objects].tolist(), masks, scores)
            evaluator.add_images([prediction.image_id])
        return predictions

    def _log_evaluation(self, stage: str) -> None:
        evaluator = self.evaluators.pop(stage, None)
        if evaluator is None:
            return
        stats = evaluator.compute()
        self.log_dict({f"{stage}/{key}": stats[key] for key in LOGGED_STATS if key in stats}, sync_dist=False)

    def validation_step(self, batch: VideoBatch, batch_idx: int) -> dict[str, list[ImagePrediction]]:
        """Oracle-prompt predictions of the batch's instances, accumulated for ``COCOeval``; returns them as
        ``{"predictions": [ImagePrediction per image]}`` (for :meth:`validation_images`)."""
        return {"predictions": self._evaluate(batch, "val")}

    def validation_images(
        self, batch: VideoBatch, outputs: dict[str, list[ImagePrediction]], max_images: int = 2
    ) -> list[tuple[str, np.ndarray]]:
        """Per image (up to ``max_images``), side by side at the model's input: the ground-truth instances with
        the evaluation prompts drawn (boxes, green/red clicks), and the predicted masks, one colour per prompt."""
        images = []
        for b, prediction in enumerate(outputs["predictions"][:max_images]):
            image = to_uint8_image(batch.images[0, b])
            size = image.shape[0]
            height, width = resize_longest_side_shape(*(int(v) for v in batch.orig_sizes[b]), size)
            gt = batch.masks[0, batch.objects_of(b)]
            count = len(prediction.prompts)
            pred = torch.zeros((count, size, size), dtype=torch.bool)
            if count:
                resized = F.interpolate(prediction.masks[None].float().cpu(), size=(height, width), mode="nearest")
                pred[:, :height, :width] = resized[0] > 0.5
            colors = object_colors(count)
            left = overlay_masks(image, gt.cpu().numpy(), object_colors(len(gt)))
            for color, prompt in zip(colors, prediction.prompts.to_dicts()):
                if prompt["box"] is not None:
                    draw_boxes(left, prompt["box"][None], color[None])
                draw_points(left, prompt["points"], prompt["point_labels"])
            right = overlay_masks(image, pred.numpy(), colors)
            caption = f"{batch.video_names[b]}: ground truth with prompts (left), prediction (right)"
            images.append((caption, frame_strip([left, right])))
        return images

    def on_validation_epoch_end(self) -> None:
        """Log ``val/segm_AP``, ``val/segm_AP50``, ``val/segm_AP75``, ``val/bbox_AP``, ``val/bbox_AP50``,
        ``val/mIoU`` (fractions in [0, 1])."""
        self._log_evaluation("val")

    def test_step(self, batch: VideoBatch, batch_idx: int) -> None:
        """As :meth:`validation_step`, logged as ``test/...``."""
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        """Log the ``test/...`` numbers of :meth:`on_validation_epoch_end`."""
        self._log_evaluation("test")

    def predict_step(self, batch: VideoBatch, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """COCO results entries (``image_id``, ``category_id``, RLE ``segmentation``, ``score``; no ``bbox``, so
        the area stays the mask's) of the batch's prompts (oracle or detections), at the original image sizes;
        with ``predict_all_masks`` every candidate mask, each with its ``mask_index`` (see
        :class:`samlab.models.sam.writers.COCOResultsWriter`, which also writes their boxes)."""
        gt = self.coco_gt("predict")
        results = []
        for prediction in self.predict_objects(batch, gt):
            if prediction.detections:
                image_ids = [d["image_id"] for d in prediction.detections]
                categories = [d["category_id"] for d in prediction.detections]
            else:
                anns = [gt.anns[int(i)] for i in batch.object_ids[prediction.objects]]
                image_ids, categories = [a["image_id"] for a in anns], [a["category_id"] for a in anns]
            if self.hparams.predict_all_masks:
                choices = [torch.full_like(prediction.best, k) for k in range(prediction.candidates.shape[1])]
            else:
                choices = [prediction.best]
            rows = torch.arange(len(prediction.best), device=prediction.best.device)
            for choice in choices:
                entries = mask_results(
                    gt,
                    image_ids,
                    categories,
                    prediction.candidates[rows, choice].cpu().numpy(),
                    self.result_scores(prediction, prediction.candidate_scores[rows, choice]),
                )
                for entry, index in zip(entries, choice.tolist(), strict=True):
                    if self.hparams.predict_all_masks:
                        entry["mask_index"] = index
                results += entries
        return results

    def preview_prompts(self, batch: VideoBatch) -> list[dict[str, Any]]:
        """The training prompts this module would sample for ``batch``, one dict per object in batch order:
        ``"points"`` float ``[n, 2]`` (x, y input pixels), ``"point_labels"`` int ``[n]`` (1 positive, 0 negative),
        ``"box"`` float ``[4]`` xyxy or None. Drawn from a generator seeded with ``seed`` (training draws are not
        disturbed)."""
        generator = torch.Generator(device=batch.masks.device).manual_seed(self.hparams.seed)
        out: list[dict[str, Any]] = []
        for b in range(batch.batch_size):
            objects = batch.objects_of(b)
            if objects.numel():
                out += sample_prompts(batch.masks[0, objects], self.prompts, generator).to_dicts()
        return out

    # ---------------------------------------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW on the trainable parameters (no weight decay on biases, norms and absolute position tables; with
        ``decay_biases`` on norms and position tables only) with linear warm-up and a per-step cosine decay over
        the whole run, or :func:`step_lr_factor`'s steps at ``lr_milestones``."""
        hp = self.hparams
        trainable = [(name, p) for name, p in self.model.named_parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("every part of SAM is frozen: nothing to train")
        norms = {
            f"{module_name}.{name}" if module_name else name
            for module_name, module in self.model.named_modules()
            if "Norm" in type(module).__name__
            for name, _ in module.named_parameters(recurse=False)
        }

        def exempt(name: str, param: torch.Tensor) -> bool:
            if hp.decay_biases:  # detectron2's groups with the Detectron2-SAM integration's overrides
                return name in norms or "pos_embed" in name or "rel_pos" in name
            return param.ndim < 2 or "pos_embed" in name

        decay = [p for name, p in trainable if not exempt(name, p)]
        no_decay = [p for name, p in trainable if exempt(name, p)]
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=hp.lr, betas=(0.9, 0.999))
        if hp.lr_milestones is None:
            return cosine_over_run(optimizer, self.trainer, hp.warmup_steps, hp.min_lr_ratio)
        milestones = sorted(int(m) for m in hp.lr_milestones)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: step_lr_factor(step, hp.warmup_steps, hp.warmup_factor, milestones, hp.lr_gamma)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

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
from samlab.metrics.coco import COCOPromptEval, load_coco_gt, prompt_results
from samlab.models.sam.losses import SAMPromptLoss
from samlab.models.sam.model import EncoderSize, ImageFeatures, build_sam, decode, embed_images, freeze
from samlab.models.sam.prompts import (
    PromptConfig,
    Prompts,
    correction_click,
    oracle_prompts,
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
    """Oracle-prompt predictions of the objects of one image.

    ``objects``: ``[n]`` indices into the batch's object axis (objects with an empty input mask are left out);
    ``masks``: ``[n, H, W]`` bool at the original image size; ``scores``: ``[n]`` float32 predicted IoUs
    (averaged over TTA views).
    """

    objects: torch.Tensor
    masks: torch.Tensor
    scores: torch.Tensor


class SAMPromptModule(LightningModule):
    """Prompted fine-tuning of SAM (ViT-B/L/H) and its oracle-prompt COCO evaluation.

    Training: every object of every image gets prompts from its ground truth (:class:`PromptConfig`: jittered box,
    clicks, or a mix, then optional correction clicks); the image embedding is computed once per image and the
    objects are decoded ``prompt_chunk_size`` at a time; the loss is :class:`SAMPromptLoss` (20 focal + dice + IoU
    MSE, best of three masks for single clicks), averaged over objects and summed over correction steps.
    Validation/test: each GT instance is predicted from its oracle prompt (tight box or centre click), mapped back to
    the original image size, and scored by ``COCOeval`` (``val/segm_AP``, ``val/bbox_AP``, ...) and mean IoU
    (``val/mIoU``) against the data module's COCO annotations. Prediction returns COCO results entries (see
    :class:`samlab.models.sam.writers.COCOResultsWriter`).

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
        lr: AdamW peak learning rate.
        weight_decay: AdamW weight decay (not on biases, norms and embeddings).
        warmup_steps: linear warm-up steps, then cosine decay to ``min_lr_ratio * lr`` over the run.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
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
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
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
    ) -> dict[str, torch.Tensor]:
        """Loss sums of one decoder group with its correction rounds."""
        logits, iou_pred = decode(self.model, features, prompts, None, multimask)
        losses, best = self.loss(self._upsample(logits), iou_pred, targets)
        rows = torch.arange(len(prompts), device=logits.device)
        low_res = logits[rows, best][:, None]
        for _ in range(self.prompts.num_correction_steps):
            # The click comes from the current prediction, the gradient does not flow through the mask prompt
            # (as SAM's and SAM 2's interactive training).
            pred = self._upsample(low_res.detach())[:, 0] > 0
            prompts = prompts.add_points(*correction_click(targets, pred, self.generator()))
            logits, iou_pred = decode(self.model, features, prompts, low_res.detach(), multimask=False)
            step, _ = self.loss(self._upsample(logits), iou_pred, targets)
            losses = {key: losses[key] + step[key] for key in losses}
            low_res = logits
        return losses

    def training_losses(self, batch: VideoBatch) -> dict[str, torch.Tensor]:
        """``{"loss", "loss_focal", "loss_dice", "loss_iou"}`` of a batch, each averaged over its objects."""
        images = self._images(batch)
        features = self.embed(images)
        sums: dict[str, torch.Tensor] = {}
        for b in range(batch.batch_size):
            objects = batch.objects_of(b)
            if objects.numel() == 0:
                continue
            targets = batch.masks[0, objects]
            prompts = sample_prompts(targets, self.prompts, self.generator())
            for chunk in self._chunks(len(objects)):
                chunk_prompts, chunk_targets = prompts.select(chunk), targets[chunk]
                for index, multimask in chunk_prompts.groups():
                    group = self._train_group(
                        features.image(b), chunk_prompts.select(index), chunk_targets[index], multimask
                    )
                    sums = {key: sums.get(key, 0.0) + value for key, value in group.items()}
        return {key: value / max(batch.num_objects, 1) for key, value in sums.items()}

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
        """Logits ``[n, 1, h, w]`` over the valid region and scores ``[n]`` of one TTA view of one image."""
        features = self.embed(view_image(image, valid, view)[None])
        moved = view_prompts(prompts, valid, view)
        logits = image.new_zeros((len(prompts), 1, *valid))
        scores = image.new_zeros(len(prompts))
        for chunk in self._chunks(len(prompts)):
            chunk_prompts = moved.select(chunk)
            rows = torch.arange(chunk.start, chunk.stop, device=image.device)
            for index, multimask in chunk_prompts.groups():
                low_res, iou_pred = decode(self.model, features, chunk_prompts.select(index), None, multimask)
                # SAM's convention: of the three answers to a single click, the one with the highest predicted IoU.
                best = iou_pred.argmax(dim=1)
                pick = torch.arange(len(best), device=best.device)
                logits[rows[index]] = unview_logits(low_res[pick, best][:, None], self.hparams.image_size, valid, view)
                scores[rows[index]] = iou_pred[pick, best]
        return logits, scores

    @torch.no_grad()
    def predict_objects(self, batch: VideoBatch) -> list[ImagePrediction]:
        """Oracle-prompt masks of every object of a batch at the original image sizes, one entry per image.

        Prompts come from the batch's GT masks (``PromptConfig.evaluation_mode``); with several TTA views the
        sigmoid probabilities are averaged at the original size and thresholded at 0.5.
        """
        images = self._images(batch)
        mode = self.prompts.evaluation_mode
        out = []
        for b in range(batch.batch_size):
            objects = batch.objects_of(b)
            height, width = (int(v) for v in batch.orig_sizes[b])
            objects = objects[batch.masks[0, objects].flatten(1).any(dim=1)]
            if objects.numel() == 0:
                out.append(
                    ImagePrediction(
                        objects, images.new_zeros((0, height, width), dtype=torch.bool), images.new_zeros(0)
                    )
                )
                continue
            valid = resize_longest_side_shape(height, width, self.hparams.image_size)
            prompts = oracle_prompts(batch.masks[0, objects], mode)
            probs = images.new_zeros((len(objects), height, width))
            scores = images.new_zeros(len(objects))
            for view in self.views:
                logits, view_scores = self._predict_view(images[b], prompts, valid, view)
                probs += F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)[
                    :, 0
                ].sigmoid()
                scores += view_scores
            count = len(self.views)
            out.append(ImagePrediction(objects, probs / count > 0.5, scores / count))
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

    def _evaluate(self, batch: VideoBatch, stage: str) -> list[ImagePrediction]:
        if stage not in self.evaluators:
            self.evaluators[stage] = COCOPromptEval(self.coco_gt("val" if stage == "val" else "test"))
        predictions = self.predict_objects(batch)
        for prediction in predictions:
            self.evaluators[stage].update(
                batch.object_ids[prediction.objects].tolist(),
                prediction.masks.cpu().numpy(),
                prediction.scores.tolist(),
            )
        return predictions

    def _log_evaluation(self, stage: str) -> None:
        evaluator = self.evaluators.pop(stage, None)
        if evaluator is None:
            return
        stats = evaluator.compute()
        self.log_dict({f"{stage}/{key}": stats[key] for key in LOGGED_STATS}, sync_dist=False)

    def validation_step(self, batch: VideoBatch, batch_idx: int) -> dict[str, list[ImagePrediction]]:
        """Oracle-prompt predictions of the batch's instances, accumulated for ``COCOeval``; returns them as
        ``{"predictions": [ImagePrediction per image]}`` (for :meth:`validation_images`)."""
        return {"predictions": self._evaluate(batch, "val")}

    def validation_images(
        self, batch: VideoBatch, outputs: dict[str, list[ImagePrediction]], max_images: int = 2
    ) -> list[tuple[str, np.ndarray]]:
        """Per image (up to ``max_images``), side by side at the model's input: the ground-truth instances with
        the oracle prompts drawn (boxes, green/red clicks), and the predicted masks, one colour per instance."""
        images = []
        for b, prediction in enumerate(outputs["predictions"][:max_images]):
            image = to_uint8_image(batch.images[0, b])
            size = image.shape[0]
            height, width = resize_longest_side_shape(*(int(v) for v in batch.orig_sizes[b]), size)
            gt = batch.masks[0, prediction.objects]
            pred = torch.zeros((len(prediction.objects), size, size), dtype=torch.bool)
            if len(prediction.objects):
                resized = F.interpolate(prediction.masks[None].float().cpu(), size=(height, width), mode="nearest")
                pred[:, :height, :width] = resized[0] > 0.5
            colors = object_colors(len(prediction.objects))
            left = overlay_masks(image, gt.cpu().numpy(), colors)
            if len(prediction.objects):
                for color, prompt in zip(colors, oracle_prompts(gt, self.prompts.evaluation_mode).to_dicts()):
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
        """COCO results entries (``image_id``, ``category_id``, RLE ``segmentation``, ``score``) of the batch's
        instances from their oracle prompts, at the original image sizes."""
        gt = self.coco_gt("predict")
        results = []
        for prediction in self.predict_objects(batch):
            results += prompt_results(
                gt,
                batch.object_ids[prediction.objects].tolist(),
                prediction.masks.cpu().numpy(),
                prediction.scores.tolist(),
            )
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
        """AdamW on the trainable parameters (no weight decay on biases, norms and embeddings) with linear warm-up
        and a per-step cosine decay over the whole run."""
        hp = self.hparams
        trainable = [(name, p) for name, p in self.model.named_parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("every part of SAM is frozen: nothing to train")
        decay = [p for name, p in trainable if p.ndim >= 2 and "pos_embed" not in name]
        no_decay = [p for name, p in trainable if p.ndim < 2 or "pos_embed" in name]
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=hp.lr, betas=(0.9, 0.999))
        return cosine_over_run(optimizer, self.trainer, hp.warmup_steps, hp.min_lr_ratio)

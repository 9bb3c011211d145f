"""``SAM2VideoModule``: SAM 2 / 2.1 video fine-tuning (the official recipe) and semi-supervised VOS evaluation.

The torch work lives in :mod:`samlab.models.sam2.vos` (training forward with simulated prompts, VOS inference) and
:mod:`samlab.models.sam2.model` (building, checkpoints, freezing, LoRA); this module only wires them to Lightning.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn

from samlab.data.batch import VideoBatch
from samlab.losses import CORE_LOSS_KEY, SAM2Loss
from samlab.metrics.vos import JandF
from samlab.models.sam2.model import (
    add_lora,
    build_sam2_model,
    cast_frozen,
    checkpoint_activations,
    freeze,
    load_checkpoint,
    run_without_grad,
)
from samlab.models.sam2.optim import cosine_over_run, sam2_param_groups
from samlab.models.sam2.prompts import PromptConfig
from samlab.models.sam2.vos import VideoPrediction, forward_training, predict_batch, resize_masks, segment_batch
from samlab.visualize import frame_strip, object_colors, overlay_masks, to_uint8_image


class SAM2VideoModule(LightningModule):
    """Fine-tune a SAM 2 model on video clips and evaluate it by semi-supervised VOS (J&F).

    Training batches are :class:`VideoBatch` clips at ``image_size`` × ``image_size``; validation, test and predict
    batches are whole videos, one per batch (``B = 1``). Defaults follow SAM 2's MOSE fine-tuning recipe; gradient
    clipping (0.1 there) is the Trainer's ``gradient_clip_val``.

    Args:
        variant: SAM 2 model (``"sam2.1_hiera_t"`` … ``"sam2.1_hiera_l"``, ``"sam2_hiera_*"`` for SAM 2.0).
        image_size: square input side in pixels (multiple of 32), linked to the data's image size by the CLI.
        checkpoint: official SAM 2 checkpoint (or a bare state dict, or a samlab Lightning checkpoint) to start from;
            None trains from random init.
        freeze_image_encoder / freeze_prompt_encoder / freeze_mask_decoder / freeze_memory: stop training these
            parts (``memory``: memory attention, memory encoder and memory / object-pointer embeddings).
        lora_rank: when set, train LoRA adapters of this rank on the Hiera attention linears instead of the whole
            image encoder (which is then frozen except the adapters).
        lora_alpha: LoRA scaling numerator (scale = alpha / rank).
        drop_path_rate: stochastic depth of the Hiera trunk in training (0.1 in the recipe).
        model_overrides: extra hydra overrides of the model config (``"++model.num_maskmem=5"``).
        prompts: training-time prompt simulation; ``PromptConfig()`` (the MOSE recipe) when None.
        loss_weights: ``SAM2Loss`` weights (``loss_mask``, ``loss_dice``, ``loss_iou``, ``loss_class``); the recipe's
            20 / 1 / 1 / 1 when None.
        lr: peak learning rate outside the image encoder.
        vision_lr: peak learning rate of the image encoder (before layer decay).
        weight_decay: AdamW weight decay (not on biases and LayerNorms).
        layer_decay: per-block learning-rate decay over the Hiera trunk.
        warmup_steps: linear warm-up steps (cut to fit runs shorter than that).
        min_lr_ratio: final learning rate of the cosine schedule as a fraction of the peak.
        val_skip_first_last: leave the first and last frame of each video out of J&F (DAVIS / SA-V protocol).
        non_overlapping: in VOS, give each pixel to at most one object (the highest logit), as label-map benchmarks.
        prompt_seed: seed of the prompt plans' own generator (upstream's ``default_rng(42)``), the same on every
            rank so that all ranks prompt alike; dropout, drop path and click noise use the global torch
            generator, which :meth:`setup` seeds with ``seed + rank`` as upstream.
        checkpoint_image_encoder: activation checkpointing of every Hiera block (recomputed in backward).
        checkpoint_memory: activation checkpointing of every memory-attention layer and of the memory encoder.
        frozen_weights_bf16: store the frozen parameters in bfloat16 (half their memory; needs ``bf16-mixed``).

    Memory options (``samlab bench memory`` accounts for each): a frozen image encoder runs under ``no_grad``
    (LoRA aside), so none of its activations are kept; checkpointing trades about one more forward of the
    checkpointed blocks for their activations; fewer frames or objects are the data's ``num_frames`` and
    ``max_num_objects``.
    """

    def __init__(
        self,
        variant: str = "sam2.1_hiera_b+",
        image_size: int = 1024,
        checkpoint: str | None = None,
        freeze_image_encoder: bool = False,
        freeze_prompt_encoder: bool = False,
        freeze_mask_decoder: bool = False,
        freeze_memory: bool = False,
        lora_rank: int | None = None,
        lora_alpha: int = 16,
        drop_path_rate: float = 0.1,
        model_overrides: list[str] | None = None,
        prompts: PromptConfig | None = None,
        loss_weights: dict[str, float] | None = None,
        lr: float = 5e-6,
        vision_lr: float = 3e-6,
        weight_decay: float = 0.1,
        layer_decay: float = 0.9,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
        val_skip_first_last: bool = False,
        non_overlapping: bool = True,
        prompt_seed: int = 42,
        checkpoint_image_encoder: bool = False,
        checkpoint_memory: bool = False,
        frozen_weights_bf16: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["prompts"])
        if isinstance(prompts, dict):  # as stored in the hyper-parameters of a checkpoint
            prompts = PromptConfig(**prompts)
        self.prompts = prompts if prompts is not None else PromptConfig()
        # Stored as a plain dict so that checkpoints stay loadable with torch.load(weights_only=True).
        self.hparams["prompts"] = vars(self.prompts).copy()
        self.model = build_sam2_model(
            variant,
            image_size=image_size,
            train=True,
            overrides=tuple(model_overrides or ()),
            drop_path_rate=drop_path_rate,
        )
        if checkpoint is not None:
            load_checkpoint(self.model, checkpoint)
        freeze(
            self.model,
            image_encoder=freeze_image_encoder,
            prompt_encoder=freeze_prompt_encoder,
            mask_decoder=freeze_mask_decoder,
            memory=freeze_memory,
        )
        if lora_rank is not None:
            add_lora(self.model, rank=lora_rank, alpha=lora_alpha)
        elif freeze_image_encoder:
            run_without_grad(self.model.image_encoder)
        checkpoint_activations(self.model, image_encoder=checkpoint_image_encoder, memory=checkpoint_memory)
        if frozen_weights_bf16:
            cast_frozen(self.model, torch.bfloat16)
        self.plan_rng = np.random.default_rng(prompt_seed)
        self.loss = SAM2Loss(weight_dict=loss_weights, pred_obj_scores=self.model.pred_obj_scores)
        self.val_scores = JandF(skip_first_last=val_skip_first_last)
        self.test_scores = JandF(skip_first_last=val_skip_first_last)

    def setup(self, stage: str) -> None:
        """Seed the global generators with ``seed + rank`` (``seed``: the run's ``seed_everything``) as upstream's
        ``set_seeds``, so that dropout, drop path and click noise differ across DDP ranks; the prompt plans keep
        their own generator (:attr:`plan_rng`), the same on every rank."""
        seed = os.environ.get("PL_GLOBAL_SEED")
        if stage == "fit" and seed is not None:
            rank_seed = int(seed) + self.global_rank
            random.seed(rank_seed)
            np.random.seed(rank_seed % 2**32)
            torch.manual_seed(rank_seed)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the prompt-plan generator's state, so a resumed run draws the plans the uninterrupted one would."""
        checkpoint["samlab_plan_rng"] = self.plan_rng.bit_generator.state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "samlab_plan_rng" in checkpoint:
            self.plan_rng.bit_generator.state = checkpoint["samlab_plan_rng"]

    def on_fit_start(self) -> None:
        """Check that bfloat16 frozen weights run under bfloat16 autocast (they cannot mix with float32 layers)."""
        if self.hparams.frozen_weights_bf16 and "bf16" not in str(self.trainer.precision):
            raise ValueError(
                f"model.init_args.frozen_weights_bf16 needs trainer.precision 'bf16-mixed', got "
                f"'{self.trainer.precision}': set --trainer.precision=bf16-mixed or frozen_weights_bf16: false"
            )

    def training_step(self, batch: VideoBatch, batch_idx: int) -> torch.Tensor | None:
        """SAM 2's training forward and loss on a batch of clips; returns the weighted loss.

        Returns None (the step is skipped, with a warning) when the batch has no object or no frame was predicted.
        """
        self.log(
            "data/skipped",
            float(batch.num_skipped),
            on_step=False,
            on_epoch=True,
            reduce_fx="sum",
            batch_size=batch.batch_size,
        )
        forward = forward_training(self.model, batch, self.prompts, training=True, plan_rng=self.plan_rng)
        if forward is None:
            rank_zero_warn(f"training batch {batch_idx} ({batch.video_names}) has no object; step skipped")
            return None
        # One call over all objects of the batch: SAM2Loss divides by their number (averaged over DDP ranks).
        losses = self.loss(forward.frames, batch.masks)
        loss = losses[CORE_LOSS_KEY]
        if not torch.isfinite(loss):
            values = ", ".join(f"{key}={float(value.detach()):.4g}" for key, value in losses.items())
            raise FloatingPointError(
                f"non-finite training loss at step {self.global_step} on videos {batch.video_names}: {values}"
            )
        if not loss.requires_grad:
            rank_zero_warn(
                f"training batch {batch_idx} ({batch.video_names}): every frame was given its GT mask as prompt, "
                "nothing to learn; step skipped (use clips longer than num_init_cond_frames_for_train)"
            )
            return None
        size = batch.batch_size
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log_dict({f"train/{k}": v for k, v in losses.items() if k != CORE_LOSS_KEY}, batch_size=size)
        if self._trainer is not None and self.trainer.optimizers:
            self.log("train/lr", max(g["lr"] for g in self.trainer.optimizers[0].param_groups), batch_size=size)
        return loss

    def validation_step(self, batch: VideoBatch, batch_idx: int) -> dict[str, torch.Tensor]:
        """Semi-supervised VOS of one video at the size of its masks, scored into ``val/J&F``.

        The data modules' evaluation batches keep the masks at their size on disk, so the masks and the score are
        those of ``samlab predict`` + ``samlab eval vos`` (the official protocol: J&F at the original resolution).
        Returns ``{"masks": [T, O, H, W] bool}``, the predicted masks (for :meth:`validation_images`).
        """
        pred = segment_batch(self.model, batch, non_overlapping=self.hparams.non_overlapping)
        self.val_scores.update(pred, batch.masks, batch.video_names[0])
        return {"masks": pred}

    def validation_images(
        self, batch: VideoBatch, outputs: dict[str, torch.Tensor], max_frames: int = 6
    ) -> list[tuple[str, np.ndarray]]:
        """One image per validation video: a strip of up to ``max_frames`` frames, ground truth on top (the first
        frame's masks are the prompt, outlined in white) and prediction below, one colour per object."""
        images = [to_uint8_image(frame) for frame in batch.images[:, 0]]
        # Masks are at the video's size on disk, frames at the model's: draw the masks at the frames' size.
        size = tuple(batch.images.shape[-2:])
        gt = resize_masks(batch.masks, size).cpu().numpy()
        pred = resize_masks(outputs["masks"], size).cpu().numpy()
        colors = object_colors(gt.shape[1])
        top = [overlay_masks(image, gt[t], colors) for t, image in enumerate(images)]
        found, _ = cv2.findContours(gt[0].any(0).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(top[0], found, -1, (255, 255, 255), 1)
        bottom = [overlay_masks(image, pred[t], colors) for t, image in enumerate(images)]
        strip = np.concatenate([frame_strip(top, max_frames), frame_strip(bottom, max_frames)], axis=0)
        caption = f"{batch.video_names[0]}: ground truth (top, frame 0 = prompt), prediction (bottom)"
        return [(caption, strip)]

    def on_validation_epoch_end(self) -> None:
        """Log ``val/J``, ``val/F`` and ``val/J&F`` (percent) over the epoch's videos."""
        self._log_scores(self.val_scores, "val")

    def test_step(self, batch: VideoBatch, batch_idx: int) -> None:
        """As :meth:`validation_step`, scored into ``test/J&F``."""
        pred = segment_batch(self.model, batch, non_overlapping=self.hparams.non_overlapping)
        self.test_scores.update(pred, batch.masks, batch.video_names[0])

    def on_test_epoch_end(self) -> None:
        """Log ``test/J``, ``test/F`` and ``test/J&F`` (percent)."""
        self._log_scores(self.test_scores, "test")

    def predict_step(self, batch: VideoBatch, batch_idx: int, dataloader_idx: int = 0) -> VideoPrediction:
        """VOS masks of one video at its original resolution (on CPU), with object ids and frame numbers."""
        prediction = predict_batch(self.model, batch, non_overlapping=self.hparams.non_overlapping)
        prediction.masks = prediction.masks.cpu()
        prediction.object_ids = prediction.object_ids.cpu()
        prediction.frame_indices = prediction.frame_indices.cpu()
        return prediction

    def vos_scores(self, dataloader: Iterable[VideoBatch]) -> dict[str, float]:
        """J, F and J&F (percent) of semi-supervised VOS over the whole-video batches of ``dataloader``.

        Runs outside the Trainer loops (e.g. before and after ``fit``): the model is put in eval mode for the pass
        and restored after; nothing is logged.
        """
        scores = JandF(skip_first_last=self.hparams.val_skip_first_last)
        was_training = self.model.training
        self.model.eval()
        try:
            for batch in dataloader:
                batch = batch.to(self.device)
                pred = segment_batch(self.model, batch, non_overlapping=self.hparams.non_overlapping)
                scores.update(pred, batch.masks, batch.video_names[0])
        finally:
            self.model.train(was_training)
        return {key: float(value) for key, value in scores.compute().items()}

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW on SAM 2's parameter groups with a per-step cosine schedule over the whole run."""
        hp = self.hparams
        groups = sam2_param_groups(
            self.model, lr=hp.lr, vision_lr=hp.vision_lr, weight_decay=hp.weight_decay, layer_decay=hp.layer_decay
        )
        optimizer = torch.optim.AdamW(groups)
        return cosine_over_run(optimizer, self.trainer, hp.warmup_steps, hp.min_lr_ratio)

    def _log_scores(self, metric: JandF, stage: str) -> None:
        scores = metric.compute()
        self.log_dict({f"{stage}/{key}": value.float() for key, value in scores.items()}, sync_dist=False)
        metric.reset()

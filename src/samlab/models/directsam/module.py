"""``DirectSAMModule``: the LightningModule that trains a one-channel SegFormer on boundary maps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from samlab.data.boundaries.batch import BoundaryBatch
from samlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_images
from samlab.metrics.contour import DEFAULT_THRESHOLDS, DEFAULT_TOLERANCE, ContourRecall
from samlab.models.directsam.model import (
    boundary_probabilities,
    build_segformer,
    load_directsam_folder,
    predict_probabilities,
    segformer_logits,
)
from samlab.visualize import frame_strip, to_uint8_image


def constant_with_warmup(warmup_steps: int) -> Callable[[int], float]:
    """LR factor of optimizer step ``step``: ``step / warmup_steps`` during the warmup, 1 after (transformers'
    ``get_constant_schedule_with_warmup``, DirectSAM's ``lr_scheduler_type='constant_with_warmup'``)."""
    return lambda step: step / max(1, warmup_steps) if step < warmup_steps else 1.0


class DirectSAMModule(L.LightningModule):
    """DirectSAM training: binary cross-entropy between the SegFormer's boundary logits, bilinearly upsampled to the
    target size, and the ``[B, S, S]`` boundary targets of a :class:`BoundaryBatch` (the loss transformers'
    ``SegformerForSemanticSegmentation`` computes for one label, as DirectSAM's ``train.py`` uses).

    Args:
        image_size: input side ``S`` (linked from the data module; 1024, or 1800 for the large recipe).
        variant: SegFormer size ``"b0"`` ... ``"b5"`` (ignored with ``pretrained``).
        pretrained: local folder for ``from_pretrained`` (an ``nvidia/mit-b*`` backbone or a DirectSAM checkpoint).
        checkpoint: a DirectSAM checkpoint folder (released on the hub, or ``samlab export --format hf``), loaded
            strictly; ``image_size`` then becomes the resolution it was trained at when the folder states it.
        config_overrides: ``SegformerConfig`` fields to change.
        lr: AdamW learning rate (DirectSAM: 1e-4 at stage 1, 5e-5 at stage 3).
        weight_decay: AdamW weight decay (transformers' ``TrainingArguments`` default, DirectSAM's: 0).
        warmup_steps: optimizer steps of linear warmup from 0, then constant (transformers'
            ``constant_with_warmup``; DirectSAM: 5000).
        thresholds: probability thresholds of the validation contour metrics (``evaluate.py``'s sweep: 0.1-0.5).
        tolerance: contour-metric tolerance in pixels (``evaluate.py``: 5).

    Validation logs ``val/loss`` and ``val/contour_recall@t``, ``val/num_tokens@t``, ``val/precision@t``,
    ``val/boundary_recall@t``, ``val/f@t`` for each threshold ``t``, with :func:`boundary_probabilities` of the
    logits at the target size. ``predict_step`` returns, per image, ``[S, S]`` float probabilities at the input
    resolution (DirectSAM's pseudo-labels are stored at the model resolution).
    """

    def __init__(
        self,
        image_size: int = 1024,
        variant: str = "b0",
        pretrained: str | None = None,
        checkpoint: str | None = None,
        config_overrides: dict[str, Any] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 5000,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        tolerance: int = DEFAULT_TOLERANCE,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.image_size = image_size
        if checkpoint is None:
            self.model = build_segformer(variant, pretrained, config_overrides)
        else:
            self.model, resolution = load_directsam_folder(checkpoint)
            self.image_size = resolution or image_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_steps = warmup_steps
        self.val_metric = ContourRecall(thresholds, tolerance)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` normalised images -> ``[B, 1, S/4, S/4]`` boundary logits."""
        return self.model(pixel_values=images).logits

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """BCE-with-logits of ``[B, 1, h, w]`` logits upsampled (bilinear) to the ``[B, H, W]`` float targets."""
        upsampled = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return F.binary_cross_entropy_with_logits(upsampled, targets.float())

    def training_step(self, batch: BoundaryBatch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch.images), batch.targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {loss.item()} at step {self.global_step}")
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.names))
        if batch.num_skipped:
            self.log("train/num_skipped", float(batch.num_skipped), reduce_fx="sum", batch_size=len(batch.names))
        return loss

    def validation_step(self, batch: BoundaryBatch, batch_idx: int) -> dict[str, torch.Tensor]:
        """Validation loss and contour scores; returns ``{"probabilities": [B, S, S]}`` (for
        :meth:`validation_images`)."""
        logits = self(batch.images)
        self.log("val/loss", self.loss(logits, batch.targets), batch_size=len(batch.names))
        probabilities = boundary_probabilities(logits, tuple(batch.targets.shape[-2:]))
        self.val_metric.update(probabilities, batch.targets > 0.5)
        return {"probabilities": probabilities}

    def validation_images(
        self, batch: BoundaryBatch, outputs: dict[str, torch.Tensor], max_images: int = 2
    ) -> list[tuple[str, np.ndarray]]:
        """Per image (up to ``max_images``): the image, its target boundary (white on the image) and the predicted
        probability (grey levels), side by side."""
        images = []
        for i in range(min(max_images, len(batch.names))):
            image = to_uint8_image(batch.images[i])
            target = image.copy()
            target[batch.targets[i].cpu().numpy() > 0.5] = 255
            probability = (outputs["probabilities"][i].float().cpu().numpy() * 255).round().astype(np.uint8)
            panels = [image, target, np.repeat(probability[..., None], 3, axis=2)]
            images.append((f"{batch.names[i]}: image, target boundary, predicted probability", frame_strip(panels)))
        return images

    def on_validation_epoch_end(self) -> None:
        if self.val_metric.update_count == 0:
            return
        scores = self.val_metric.compute()
        self.val_metric.reset()
        for key, value in scores.items():
            if not torch.isnan(value):
                self.log(f"val/{key}", value, sync_dist=False)

    def predict_step(self, batch: BoundaryBatch, batch_idx: int) -> list[torch.Tensor]:
        """Per image, ``[S, S]`` float32 probabilities at the input resolution (on the CPU)."""
        probabilities = boundary_probabilities(self(batch.images), tuple(batch.images.shape[-2:]))
        return list(probabilities.cpu())

    @torch.no_grad()
    def predict_probabilities(self, image: torch.Tensor, tile: bool = False, overlap: float = 0.25) -> torch.Tensor:
        """Boundary probabilities ``[H, W]`` in [0, 1] of one ``[3, H, W]`` image (uint8, or float normalised) of
        any size: resized whole to ``image_size`` (DirectSAM), or with ``tile`` run in overlapping tiles when larger
        (see :func:`samlab.models.directsam.model.predict_probabilities`)."""
        image = image.to(self.device)
        if image.dtype == torch.uint8:
            image = normalize_images(image, IMAGENET_MEAN, IMAGENET_STD)
        was_training = self.training
        self.eval()
        try:
            return predict_probabilities(segformer_logits(self.model), image, self.image_size, tile, overlap)
        finally:
            self.train(was_training)

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, constant_with_warmup(self.warmup_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

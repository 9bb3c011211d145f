"""``DirectSAMModule``: the LightningModule that trains a one-channel SegFormer on boundary maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from samlab.data.boundary_datamodule import BoundaryBatch
from samlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_images
from samlab.metrics.contour import ContourRecall
from samlab.models.directsam.model import (
    build_segformer,
    load_directsam_folder,
    predict_probabilities,
    segformer_logits,
)
from samlab.visualize import frame_strip, to_uint8_image


def default_tolerance(image_size: int) -> int:
    """DirectSAM's evaluation tolerance: 1% of the resolution, made odd (1024 -> 11)."""
    tolerance = image_size // 100
    return tolerance + int(tolerance % 2 == 0)


class DirectSAMModule(L.LightningModule):
    """DirectSAM training: binary cross-entropy between the SegFormer's boundary logits, bilinearly upsampled to the
    target size, and the ``[B, S, S]`` boundary targets of a :class:`BoundaryBatch`.

    Args:
        image_size: input side ``S`` (linked from the data module; 1024, or 1800 for the large recipe).
        variant: SegFormer size ``"b0"`` ... ``"b5"`` (ignored with ``pretrained``).
        pretrained: local folder for ``from_pretrained`` (an ``nvidia/mit-b*`` backbone or a DirectSAM checkpoint).
        checkpoint: a DirectSAM checkpoint folder (released on the hub, or ``samlab export --format hf``), loaded
            strictly; ``image_size`` then becomes the resolution it was trained at when the folder states it.
        config_overrides: ``SegformerConfig`` fields to change.
        lr: AdamW learning rate (DirectSAM: 1e-4, constant after warmup).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warmup steps.
        thresholds: probability thresholds of the validation contour metrics.
        tolerance: contour-metric tolerance in pixels at ``S``; None = 1% of ``S``, made odd.

    Validation logs ``val/loss`` and ``val/contour_recall@t``, ``val/num_tokens@t``, ``val/precision@t``,
    ``val/boundary_recall@t``, ``val/f@t`` for each threshold ``t``. ``predict_step`` returns, per image,
    ``[H, W]`` float probabilities at its original size.
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
        thresholds: Sequence[float] = (0.5,),
        tolerance: int | None = None,
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
        self.val_metric = ContourRecall(thresholds, tolerance or default_tolerance(image_size))

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
        size = batch.targets.shape[-2:]
        probabilities = F.interpolate(logits.sigmoid(), size=size, mode="bicubic", align_corners=False)[:, 0]
        probabilities = probabilities.clamp(0, 1)
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
        logits = self(batch.images)
        out = []
        for logit, (height, width) in zip(logits, batch.orig_sizes.tolist()):
            upsampled = F.interpolate(logit[None].sigmoid(), size=(height, width), mode="bicubic", align_corners=False)
            out.append(upsampled[0, 0].clamp(0, 1).float().cpu())
        return out

    @torch.no_grad()
    def predict_probabilities(self, image: torch.Tensor, tile: bool = True, overlap: float = 0.25) -> torch.Tensor:
        """Boundary probabilities ``[H, W]`` in [0, 1] of one ``[3, H, W]`` image (uint8, or float normalised) of
        any size; larger than ``image_size`` it is run in overlapping tiles (see
        :func:`samlab.models.directsam.model.predict_probabilities`)."""
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
        warmup = max(self.warmup_steps, 1)
        # Constant after a linear warmup, as DirectSAM's "constant_with_warmup".
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

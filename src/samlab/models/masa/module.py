"""``MASAModule``: MASA training on view pairs (SGD, linear warm-up, step decay) and embedding-matching validation.

The torch parts live in :mod:`samlab.models.masa.model`; the tracker built from ``tracker`` settings in
:mod:`samlab.models.masa.tracker`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule

from samlab.data.pairs.batch import PairBatch
from samlab.models.masa.backbones import build_backbone
from samlab.models.masa.model import MASAModel, matching_accuracy
from samlab.models.masa.tracker import Tracker, build_tracker
from samlab.visualize import draw_boxes, frame_strip, object_colors, to_uint8_image


class MASAModule(LightningModule):
    """Train the MASA adapter, box head and embedding head on pairs of augmented views (:class:`PairBatch`).

    Args:
        image_size: side of the square inputs, linked to the data's by the CLI.
        backbone: ``"sam"`` (SAM ViT image encoder, frozen; MASA's SAM recipe), ``"sam2"`` (Hiera trunk, frozen),
            ``"resnet50"`` / ``"resnet18"`` (torchvision, trained).
        checkpoint: local weights of the backbone (SAM / SAM 2 checkpoint, torchvision ResNet state dict); None
            gives random init.
        backbone_options: more backbone settings (``{"variant": "vit_h"}``; tiny test models via ``overrides``).
        channels: adapter width (256 in MASA).
        fusion_blocks: fusion blocks of the adapter (3 in MASA).
        fusion: the adapter's fusion block: ``"dyhead"`` (mmdet's DyHead, MASA-SAM's) or ``"deform"`` (MASA's
            DeformFusion, MASA-GDINO's and masa-one's).
        roi_levels: pyramid levels the RoI heads pool from, finest first (4: strides 4-32, MASA-SAM and masa-one;
            3: strides 8-32, MASA-GDINO).
        anchor_scale: RPN anchor side in strides (8 in mmdet; smaller for tiny inputs).
        fc_channels: width of the fc layers of the box and embedding heads (1024 in MASA).
        roi_samples: RoIs sampled per image for the box head and the association losses (512 in MASA).
        lr / momentum / weight_decay: SGD (MASA: 0.08 for 64 images per step, 8 GPUs x 8, 0.9, 1e-4).
        warmup_iters / warmup_ratio: linear warm-up from ``warmup_ratio * lr`` over the first optimizer steps.
        milestones / gamma: the learning rate is multiplied by ``gamma`` at each of these epochs.
        loss_weights: weights of ``loss_track`` (0.25), ``loss_track_aux`` (1) and the detector losses (1 each).
        tracker: tracker settings (:func:`~samlab.models.masa.tracker.build_tracker`: MASATracker keywords, a
            ``preset``, or a ``class_path``) used by :meth:`make_tracker` (``samlab track``).
    """

    def __init__(
        self,
        image_size: int = 1024,
        backbone: str = "sam",
        checkpoint: str | None = None,
        backbone_options: dict[str, Any] | None = None,
        channels: int = 256,
        fusion_blocks: int = 3,
        fusion: str = "dyhead",
        roi_levels: int = 4,
        anchor_scale: float = 8.0,
        fc_channels: int = 1024,
        roi_samples: int = 512,
        lr: float = 0.08,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        warmup_iters: int = 1000,
        warmup_ratio: float = 0.001,
        milestones: list[int] | None = None,
        gamma: float = 0.1,
        loss_weights: dict[str, float] | None = None,
        tracker: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.image_size = image_size
        self.model = MASAModel(
            build_backbone(backbone, image_size, checkpoint=checkpoint, options=backbone_options),
            channels=channels,
            fusion_blocks=fusion_blocks,
            fusion=fusion,
            roi_levels=roi_levels,
            anchor_scale=anchor_scale,
            fc_channels=fc_channels,
            roi_samples=roi_samples,
        )
        self.milestones = list(milestones) if milestones is not None else [8, 11]
        self.loss_weights = {"loss_track": 0.25, "loss_track_aux": 1.0, **(loss_weights or {})}
        self.tracker_settings = dict(tracker or {})
        build_tracker(self.tracker_settings)  # bad tracker settings fail at start-up, not when tracking
        self._val_counts = [0, 0]

    def make_tracker(self) -> Tracker:
        """A fresh tracker of this module's ``tracker`` settings (:func:`~samlab.models.masa.tracker.build_tracker`)."""
        return build_tracker(self.tracker_settings)

    def training_step(self, batch: PairBatch, batch_idx: int) -> torch.Tensor:
        losses = self.model.loss(
            batch.key_images, batch.ref_images, batch.key_boxes, batch.key_ids, batch.ref_boxes, batch.ref_ids
        )
        total = sum(self.loss_weights.get(name, 1.0) * value for name, value in losses.items())
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite MASA loss at step {self.global_step}: {losses}")
        size = batch.key_images.shape[0]
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=size)
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=size)
        if batch.num_skipped:
            self.log("train/num_skipped", float(batch.num_skipped), reduce_fx="sum", batch_size=size)
        return total

    def validation_step(self, batch: PairBatch, batch_idx: int) -> dict[str, list[torch.Tensor]]:
        """Top-1 matching of key to reference instances, counted into ``val/match_acc``; returns the instance
        embeddings ``{"key_embeds": [N_b, D] per image, "ref_embeds": ...}`` (for :meth:`validation_images`)."""
        size = tuple(batch.key_images.shape[-2:])
        count = len(batch.key_boxes)
        features = self.model.features(torch.cat([batch.key_images, batch.ref_images]))
        embeds = self.model.embed(features, [*batch.key_boxes, *batch.ref_boxes], size)
        parts = embeds.split([len(b) for b in [*batch.key_boxes, *batch.ref_boxes]])
        for b in range(count):
            correct, total = matching_accuracy(parts[b], parts[count + b], batch.key_ids[b], batch.ref_ids[b])
            self._val_counts[0] += correct
            self._val_counts[1] += total
        return {"key_embeds": list(parts[:count]), "ref_embeds": list(parts[count:])}

    def validation_images(
        self, batch: PairBatch, outputs: dict[str, list[torch.Tensor]], max_images: int = 2
    ) -> list[tuple[str, np.ndarray]]:
        """Per image (up to ``max_images``): the key view with its instance boxes, one colour each, next to the
        reference view where each box takes the colour of the key instance whose embedding matched it best
        (white: matched by none)."""
        images = []
        for b in range(min(max_images, len(batch.key_boxes))):
            key, ref = to_uint8_image(batch.key_images[b]), to_uint8_image(batch.ref_images[b])
            key_boxes, ref_boxes = batch.key_boxes[b].cpu().numpy(), batch.ref_boxes[b].cpu().numpy()
            colors = object_colors(len(key_boxes))
            draw_boxes(key, key_boxes, colors)
            ref_colors = np.full((len(ref_boxes), 3), 255, np.uint8)
            if len(key_boxes) and len(ref_boxes):
                cosine = F.normalize(outputs["key_embeds"][b], dim=1) @ F.normalize(outputs["ref_embeds"][b], dim=1).T
                for k, r in enumerate(cosine.argmax(dim=1).tolist()):
                    ref_colors[r] = colors[k]
            draw_boxes(ref, ref_boxes, ref_colors)
            caption = f"{batch.names[b]}: key view (left), reference boxes coloured by their best-matching key box"
            images.append((caption, frame_strip([key, ref])))
        return images

    def on_validation_epoch_end(self) -> None:
        correct, total = (float(v) for v in self.all_gather(torch.tensor(self._val_counts)).reshape(-1, 2).sum(0))
        self.log("val/match_acc", correct / max(total, 1.0), sync_dist=False)
        self._val_counts = [0, 0]

    def lr_factor(self, step: int, epoch: int) -> float:
        """Learning-rate factor at optimizer step ``step`` of epoch ``epoch``: linear warm-up times step decay."""
        warm = 1.0
        if step < self.hparams.warmup_iters:
            ratio = self.hparams.warmup_ratio
            warm = ratio + (1.0 - ratio) * step / self.hparams.warmup_iters
        return warm * self.hparams.gamma ** sum(epoch >= m for m in self.milestones)

    def configure_optimizers(self) -> dict[str, Any]:
        """SGD over the trained parameters with :meth:`lr_factor` applied at every step."""
        params = [p for p in self.parameters() if p.requires_grad]
        hp = self.hparams
        optimizer = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: self.lr_factor(step, self.current_epoch if self._trainer else 0)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

"""``MASAModel``: the plain-torch MASA network (backbone, adapter, box detector, embedding head) and its losses.

Nothing here knows about Lightning or files: :mod:`samlab.models.masa.module` wires it to training, and
:mod:`samlab.models.masa.tracker` associates its embeddings over time.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.image_list import ImageList

from samlab.models.masa.adapter import MASAAdapter
from samlab.models.masa.backbones import Backbone
from samlab.models.masa.heads import EmbedHead, LevelRoIAlign, build_box_detector, sample_track_rois
from samlab.models.masa.losses import margin_l2_loss, multi_positive_contrastive_loss

Features = OrderedDict[str, torch.Tensor]


class MASAModel(nn.Module):
    """Backbone → :class:`MASAAdapter` → class-agnostic detector (RPN + RoI head) and 256-d RoI embeddings.

    Args:
        backbone: a :class:`~samlab.models.masa.backbones.Backbone` (a frozen one runs without gradients).
        channels: width of the adapter's pyramid.
        fusion_blocks: fusion blocks of the adapter.
        fusion: ``"dyhead"`` (mmdet's DyHead, MASA-SAM) or ``"deform"`` (MASA's DeformFusion, MASA-GDINO / R50).
        anchor_scale: RPN anchor side in strides (8 as mmdet; smaller for tiny images).
        roi_levels: how many of the finest pyramid levels RoIs are pooled from (4 as MASA-SAM and masa-one: strides
            4, 8, 16, 32; 3 as MASA-GDINO: strides 8, 16, 32).
        embed_channels: embedding size.
        fc_channels: width of the fc layers of the box and embedding heads (1024 in MASA).
        roi_samples: RoIs sampled per image for the box head and for the association losses (512 in MASA).
    """

    def __init__(
        self,
        backbone: Backbone,
        channels: int = 256,
        fusion_blocks: int = 3,
        fusion: str = "dyhead",
        anchor_scale: float = 8.0,
        roi_levels: int = 4,
        embed_channels: int = 256,
        fc_channels: int = 1024,
        roi_samples: int = 512,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.adapter = MASAAdapter(backbone.out_channels, backbone.strides, channels, fusion_blocks, fusion)
        names = [f"p{i}" for i in range(len(self.adapter.strides))]
        self.roi_levels = names[:roi_levels]
        self.rpn, self.roi_heads = build_box_detector(
            self.adapter.strides, self.roi_levels, channels, anchor_scale, fc_channels, roi_samples
        )
        self.roi_align = LevelRoIAlign(self.roi_levels, self.adapter.strides[:roi_levels])
        self.embed_head = EmbedHead(
            channels, conv_channels=channels, fc_channels=fc_channels, embed_channels=embed_channels
        )
        self.embed_channels = embed_channels
        self.roi_samples = roi_samples

    def features(self, images: torch.Tensor) -> Features:
        """The fused pyramid of normalised ``images`` ``[B, 3, S, S]``: maps ``"p0"``, ``"p1"``, … (finest first)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.backbone.frozen):
            maps = self.backbone(images)
        return self.adapter(maps)

    def embed(self, features: Features, boxes: list[torch.Tensor], image_size: tuple[int, int]) -> torch.Tensor:
        """Embeddings ``[sum N_b, embed_channels]`` of ``boxes`` (one ``[N_b, 4]`` x1 y1 x2 y2 tensor per image of
        ``features``, pixels of the ``image_size`` (H, W) input), concatenated in image order."""
        if sum(len(b) for b in boxes) == 0:
            return features["p0"].new_zeros((0, self.embed_channels))
        rois = self.roi_align(features, [b.to(features["p0"].dtype) for b in boxes], [image_size] * len(boxes))
        return self.embed_head(rois)

    def detect(self, features: Features, image_size: tuple[int, int]) -> list[dict[str, torch.Tensor]]:
        """Class-agnostic boxes per image (``{"boxes" [N, 4], "scores" [N], "labels" [N] (all 1)}``), for use without
        an external detector. Runs the detector in eval mode."""
        was_training = self.training
        self.rpn.eval()
        self.roi_heads.eval()
        try:
            count = next(iter(features.values())).shape[0]
            images = ImageList(features["p0"].new_zeros((count, 3, *image_size)), [image_size] * count)
            proposals, _ = self.rpn(images, features)
            detections, _ = self.roi_heads(features, proposals, images.image_sizes)
        finally:
            self.rpn.train(was_training)
            self.roi_heads.train(was_training)
        return detections

    def loss(
        self,
        key_images: torch.Tensor,
        ref_images: torch.Tensor,
        key_boxes: list[torch.Tensor],
        key_ids: list[torch.Tensor],
        ref_boxes: list[torch.Tensor],
        ref_ids: list[torch.Tensor],
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """MASA's training losses on ``B`` view pairs (unweighted).

        ``key_images`` / ``ref_images``: ``[B, 3, S, S]`` normalised; ``*_boxes``: ``B`` tensors ``[N_b, 4]`` (the SAM
        boxes of each view); ``*_ids``: ``B`` tensors ``[N_b]`` int64 instance ids. The detector learns the boxes of
        the key view (as MASA); for the association, key positive RoIs are matched against all reference RoIs
        (positives and negatives) of the same image. Returns ``loss_rpn_objectness``, ``loss_rpn_box``,
        ``loss_classifier``, ``loss_box_reg`` (key view), ``loss_track`` (multi-positive contrastive) and
        ``loss_track_aux`` (margin L2).
        """
        count = len(key_boxes)
        images = torch.cat([key_images, ref_images])
        size = (int(images.shape[-2]), int(images.shape[-1]))
        features = self.features(images)
        key_features = OrderedDict((name, x[:count]) for name, x in features.items())
        ref_features = OrderedDict((name, x[count:]) for name, x in features.items())
        boxes = [b.to(images.dtype) for b in [*key_boxes, *ref_boxes]]
        ids = [*key_ids, *ref_ids]
        # As MASA: the RPN and RoI head learn from the key view only; the reference view's proposals are the RPN's
        # test-time ones (no loss), which the association samples from.
        targets = [{"boxes": b, "labels": torch.ones(len(b), dtype=torch.long, device=b.device)} for b in boxes[:count]]
        key_list = ImageList(key_images, [size] * count)
        proposals, rpn_losses = self.rpn(key_list, key_features, targets)
        _, roi_losses = self.roi_heads(key_features, proposals, key_list.image_sizes, targets)
        losses = {**rpn_losses, **roi_losses}
        self.rpn.eval()
        try:
            with torch.no_grad():
                ref_proposals, _ = self.rpn(ImageList(ref_images, [size] * count), ref_features)
        finally:
            self.rpn.train(self.training)
        proposals = [*proposals, *ref_proposals]

        sampled = [
            sample_track_rois(p, b, i, generator, num=self.roi_samples)
            for p, b, i in zip(proposals, boxes, ids, strict=True)
        ]
        key_rois = [s.boxes[s.positive] for s in sampled[:count]]
        ref_rois = [s.boxes for s in sampled[count:]]
        embeds = self.embed(features, key_rois + ref_rois, size)
        sizes = [len(r) for r in key_rois + ref_rois]
        parts = list(embeds.split(sizes))
        track, aux = embeds.sum() * 0.0, embeds.sum() * 0.0
        for b in range(count):
            key_embed, ref_embed = parts[b], parts[count + b]
            key_sample, ref_sample = sampled[b], sampled[count + b]
            key_pos_ids = key_sample.instance_ids[key_sample.positive]
            same = key_pos_ids[:, None] == ref_sample.instance_ids[None, :]
            match = same & ref_sample.positive[None, :]
            track = track + multi_positive_contrastive_loss(key_embed @ ref_embed.T, match)
            cosine = F.normalize(key_embed, dim=1) @ F.normalize(ref_embed, dim=1).T
            aux = aux + margin_l2_loss(cosine, match)
        losses["loss_track"] = track / max(count, 1)
        losses["loss_track_aux"] = aux / max(count, 1)
        return losses


def matching_accuracy(
    key_embeds: torch.Tensor, ref_embeds: torch.Tensor, key_ids: torch.Tensor, ref_ids: torch.Tensor
) -> tuple[int, int]:
    """Top-1 association of one view pair: each key instance whose id is in the reference view is matched to the
    reference embedding of highest cosine similarity. Returns ``(correct, matchable)`` counts."""
    matchable = torch.isin(key_ids, ref_ids)
    if not matchable.any() or len(ref_ids) == 0:
        return 0, int(matchable.sum())
    cosine = F.normalize(key_embeds[matchable], dim=1) @ F.normalize(ref_embeds, dim=1).T
    predicted = ref_ids[cosine.argmax(dim=1)]
    return int((predicted == key_ids[matchable]).sum()), int(matchable.sum())

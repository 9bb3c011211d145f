"""MASA's heads: the class-agnostic box detector (torchvision RPN + RoI head), the embedding head, mmdet's RoI
feature extractor and the RoI sampling of the association losses."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import box_iou, roi_align


class LevelRoIAlign(nn.Module):
    """mmdet's ``SingleRoIExtractor`` as MASA configures it: each box is pooled from pyramid level
    ``floor(log2(sqrt(w * h) / finest_scale + 1e-6))`` (clamped to the levels given) by ``RoIAlign`` with
    ``aligned=True`` (half-pixel offset) and an adaptive sampling ratio (``sampling_ratio=0``).

    ``featmap_names`` / ``strides``: the pooled pyramid maps, finest first. Called as torchvision's
    ``MultiScaleRoIAlign``: ``(features {name: [B, C, H, W]}, boxes [N_b, 4] per image, image_shapes)`` →
    ``[sum N_b, C, output_size, output_size]`` in image order.
    """

    def __init__(
        self,
        featmap_names: list[str],
        strides: list[int],
        output_size: int = 7,
        sampling_ratio: int = 0,
        finest_scale: float = 56.0,
    ) -> None:
        super().__init__()
        if len(featmap_names) != len(strides):
            raise ValueError(f"{len(featmap_names)} RoI levels but {len(strides)} strides")
        self.featmap_names = list(featmap_names)
        self.strides = list(strides)
        self.output_size = output_size
        self.sampling_ratio = sampling_ratio
        self.finest_scale = finest_scale

    def levels(self, boxes: torch.Tensor) -> torch.Tensor:
        """``[N]`` int64 level index (into ``featmap_names``) of ``boxes`` ``[N, 4]`` x1 y1 x2 y2."""
        scale = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0).sqrt()
        levels = torch.floor(torch.log2(scale / self.finest_scale + 1e-6))
        return levels.clamp(0, len(self.strides) - 1).long()

    def forward(
        self,
        features: dict[str, torch.Tensor],
        boxes: list[torch.Tensor],
        image_shapes: list[tuple[int, int]] | None = None,
    ) -> torch.Tensor:
        first = features[self.featmap_names[0]]
        rois = torch.cat(
            [torch.cat([b.new_full((len(b), 1), float(i)), b.to(first.dtype)], dim=1) for i, b in enumerate(boxes)]
        )
        out = first.new_zeros((len(rois), first.shape[1], self.output_size, self.output_size))
        levels = self.levels(rois[:, 1:])
        for index, (name, stride) in enumerate(zip(self.featmap_names, self.strides, strict=True)):
            chosen = torch.nonzero(levels == index).flatten()
            level = features[name]
            if len(chosen):
                out[chosen] = roi_align(
                    level,
                    rois[chosen],
                    self.output_size,
                    spatial_scale=1.0 / stride,
                    sampling_ratio=self.sampling_ratio,
                    aligned=True,
                )
            else:  # a level without RoIs stays in the graph (DDP expects every parameter to get a gradient)
                out = out + level.sum() * 0.0
        return out


class MASARoIHeads(RoIHeads):
    """torchvision's ``RoIHeads`` with MASA's box loss: L1 on the encoded deltas of the positive RoIs (mmdet
    ``L1Loss``), summed and divided by the number of sampled RoIs, as mmdet's ``avg_factor``; cross-entropy for the
    classifier. Inference is torchvision's."""

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None:
            raise ValueError("MASARoIHeads needs targets in training mode")
        proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        class_logits, box_regression = self.box_predictor(
            self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        )
        return [], box_losses(class_logits, box_regression, labels, regression_targets)


def box_losses(
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    labels: list[torch.Tensor],
    regression_targets: list[torch.Tensor],
) -> dict[str, torch.Tensor]:
    """mmdet's ``Shared2FCBBoxHead`` losses on sampled RoIs.

    ``class_logits`` ``[N, K]``; ``box_regression`` ``[N, 4 K]`` deltas per class; ``labels``: per image ``[N_b]``
    int64 (0 background); ``regression_targets``: per image ``[N_b, 4]`` encoded deltas. Returns
    ``loss_classifier`` (mean cross-entropy) and ``loss_box_reg`` (L1 of the positives' deltas of their class,
    divided by ``N``).
    """
    labels_all = torch.cat(labels)
    targets_all = torch.cat(regression_targets)
    positive = torch.nonzero(labels_all > 0).flatten()
    deltas = box_regression.reshape(len(labels_all), -1, 4)[positive, labels_all[positive]]
    return {
        "loss_classifier": F.cross_entropy(class_logits, labels_all),
        "loss_box_reg": F.l1_loss(deltas, targets_all[positive], reduction="sum") / max(labels_all.numel(), 1),
    }


class EmbedHead(nn.Module):
    """QDTrack/MASA embedding head: ``[N, C, 7, 7]`` RoI features → 4 convs (GroupNorm, ReLU) → fc 1024 → 256-d.

    Returns ``[N, embed_channels]`` unnormalised embeddings (the tracker takes dot products and cosines).
    Initialised as mmdet's ``QuasiDenseEmbedHead`` in MASA: convs Kaiming-normal (fan-out, ReLU; mmcv's
    ``ConvModule``), GroupNorm weight 1 and bias 0, the fc layers Xavier-uniform with zero bias, the last layer
    normal with std 0.01 and zero bias. The fc's scale sets the scale of the untrained embeddings, hence how sharp
    the dot-product softmax of the contrastive loss and of the tracker is at the start of training.
    """

    def __init__(
        self,
        in_channels: int = 256,
        num_convs: int = 4,
        conv_channels: int = 256,
        fc_channels: int = 1024,
        embed_channels: int = 256,
        roi_size: int = 7,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_convs):
            layers += [
                nn.Conv2d(in_channels if i == 0 else conv_channels, conv_channels, 3, padding=1, bias=False),
                nn.GroupNorm(32 if conv_channels % 32 == 0 else 1, conv_channels),
                nn.ReLU(inplace=True),
            ]
        self.convs = nn.Sequential(*layers)
        width = conv_channels if num_convs else in_channels
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(width * roi_size * roi_size, fc_channels), nn.ReLU(inplace=True)
        )
        self.embed = nn.Linear(fc_channels, embed_channels)
        for module in self.convs.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.fc.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.embed.weight, 0.0, 0.01)
        nn.init.zeros_(self.embed.bias)

    def forward(self, roi_features: torch.Tensor) -> torch.Tensor:
        return self.embed(self.fc(self.convs(roi_features)))


def build_box_detector(
    strides: list[int],
    roi_levels: list[str],
    channels: int = 256,
    anchor_scale: float = 8.0,
    fc_channels: int = 1024,
    roi_samples: int = 512,
) -> tuple[RegionProposalNetwork, MASARoIHeads]:
    """The class-agnostic two-stage detector trained on the SAM boxes (MASA's RPN + ``Shared2FCBBoxHead``).

    ``strides``: those of the pyramid maps the RPN runs on (all of them); ``roi_levels``: the names of the finest
    ``len(roi_levels)`` maps, which the RoI head pools from (:class:`LevelRoIAlign`);
    ``anchor_scale``: anchor side in strides (8: 64 px anchors at stride 8, as mmdet's RPN), ratios 0.5, 1, 2;
    ``fc_channels``: width of the two shared fc layers of the box head; ``roi_samples``: RoIs per image.
    RPN: IoU >= 0.7 positive, < 0.3 negative, 256 anchors per image, half positive, NMS 0.7, smooth L1 (beta 1/9).
    RoI head: IoU 0.5, ``roi_samples`` (512) RoIs per image, a quarter positive, box deltas scaled (10, 10, 5, 5),
    L1 box loss (:class:`MASARoIHeads`), test NMS 0.5 and 50 boxes.
    """
    sizes = tuple((float(anchor_scale * s),) for s in strides)
    anchors = AnchorGenerator(sizes=sizes, aspect_ratios=((0.5, 1.0, 2.0),) * len(strides))
    rpn = RegionProposalNetwork(
        anchors,
        RPNHead(channels, 3),
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_top_n={"training": 2000, "testing": 1000},
        post_nms_top_n={"training": 1000, "testing": 1000},
        nms_thresh=0.7,
    )
    roi_heads = MASARoIHeads(
        LevelRoIAlign(roi_levels, strides[: len(roi_levels)]),
        TwoMLPHead(channels * 49, fc_channels),
        FastRCNNPredictor(fc_channels, 2),
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=roi_samples,
        positive_fraction=0.25,
        bbox_reg_weights=None,
        score_thresh=0.02,
        nms_thresh=0.5,
        detections_per_img=50,
    )
    return rpn, roi_heads


@dataclass
class SampledRoIs:
    """RoIs sampled for the association losses on one image: ``boxes`` ``[M, 4]``, ``instance_ids`` ``[M]`` int64
    (the assigned instance of a positive) and ``positive`` ``[M]`` bool; positives come first."""

    boxes: torch.Tensor
    instance_ids: torch.Tensor
    positive: torch.Tensor


def sample_track_rois(
    proposals: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_ids: torch.Tensor,
    generator: torch.Generator | None = None,
    pos_iou: float = 0.7,
    neg_iou: float = 0.3,
    num: int = 512,
    pos_fraction: float = 0.5,
    neg_pos_ub: int = 3,
) -> SampledRoIs:
    """MASA's track-head RoI sampling on one image.

    ``proposals`` ``[P, 4]`` and the ground-truth boxes ``gt_boxes`` ``[G, 4]`` (added as proposals) are assigned
    to their best-overlapping instance: IoU >= ``pos_iou`` positive, < ``neg_iou`` negative, in between ignored.
    Up to ``num * pos_fraction`` positives are kept, balanced over instances (each instance gets an equal share,
    leftovers at random); negatives at random, at most ``neg_pos_ub`` times the positives and ``num`` in all.
    """
    device = gt_boxes.device
    candidates = torch.cat([gt_boxes, proposals.detach()]) if len(gt_boxes) else proposals.detach()
    if len(gt_boxes):
        iou = box_iou(candidates, gt_boxes)
        best, assigned = iou.max(dim=1)
    else:
        best = torch.zeros(len(candidates), device=device)
        assigned = torch.zeros(len(candidates), dtype=torch.long, device=device)
    pos_idx = torch.nonzero(best >= pos_iou).flatten()
    neg_idx = torch.nonzero(best < neg_iou).flatten()
    max_pos = int(num * pos_fraction)
    if len(pos_idx) > max_pos:
        # Instance-balanced: a random order within each instance, then round-robin over instances.
        order = pos_idx[torch.randperm(len(pos_idx), generator=generator, device="cpu").to(device)]
        owner = assigned[order]
        rank = torch.zeros_like(order)
        for g in owner.unique():
            members = owner == g
            rank[members] = torch.arange(int(members.sum()), device=device)
        pos_idx = order[torch.argsort(rank, stable=True)[:max_pos]]
    max_neg = min(num - len(pos_idx), neg_pos_ub * max(len(pos_idx), 1))
    if len(neg_idx) > max_neg:
        neg_idx = neg_idx[torch.randperm(len(neg_idx), generator=generator, device="cpu")[:max_neg].to(device)]
    keep = torch.cat([pos_idx, neg_idx])
    ids = gt_ids[assigned[keep]] if len(gt_boxes) else torch.full((len(keep),), -1, dtype=torch.long, device=device)
    positive = torch.zeros(len(keep), dtype=torch.bool, device=device)
    positive[: len(pos_idx)] = True
    return SampledRoIs(boxes=candidates[keep], instance_ids=ids, positive=positive)

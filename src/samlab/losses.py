"""Segmentation losses of the SAM family: focal, dice, IoU-prediction and object-score losses, and ``SAM2Loss``.

``SAM2Loss`` reproduces the loss of SAM 2's official training code (``MultiStepMultiMasksAndIous``) with the weights
of its MOSE fine-tuning recipe, on the same multi-step output layout, so that numbers are comparable with upstream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

CORE_LOSS_KEY = "core_loss"
LOSS_KEYS = ("loss_mask", "loss_dice", "loss_iou", "loss_class")


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Element-wise focal loss of RetinaNet (Lin et al., 2017) on logits; no reduction.

    Args:
        logits: float tensor of any shape.
        targets: same shape, values in [0, 1] (1 = foreground).
        alpha: weight of the positives (``1 - alpha`` for negatives); a negative value turns the weighting off.
        gamma: focusing exponent; 0 with ``alpha < 0`` gives plain binary cross-entropy.

    Returns:
        The per-element loss, same shape and dtype as ``logits``.
    """
    prob = logits.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    prob_of_truth = prob * targets + (1 - prob) * (1 - targets)
    loss = cross_entropy * (1 - prob_of_truth) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft dice loss ``1 - (2|P∩T| + 1) / (|P| + |T| + 1)`` per mask, over the last two (spatial) dimensions.

    Args:
        logits: ``[..., H, W]`` float mask logits.
        targets: ``[..., H, W]`` targets in [0, 1].

    Returns:
        ``[...]`` loss in [0, 1); the +1 smoothing makes an empty prediction of an empty target cost ~0.
    """
    prob = logits.sigmoid().flatten(-2)
    targets = targets.flatten(-2)
    numerator = 2 * (prob * targets).sum(-1)
    denominator = prob.sum(-1) + targets.sum(-1)
    return 1 - (numerator + 1) / (denominator + 1)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of the binarised prediction (``logits > 0``) with the target (``> 0``), over the last two dimensions.

    Args:
        logits: ``[..., H, W]`` mask logits.
        targets: ``[..., H, W]`` binary targets (bool or float).

    Returns:
        ``[...]`` float32 IoU in [0, 1]; 0 when both masks are empty (the union is clamped to 1 pixel).
    """
    pred = logits.flatten(-2) > 0
    truth = targets.flatten(-2) > 0
    intersection = (pred & truth).sum(-1).float()
    union = (pred | truth).sum(-1).float()
    return intersection / union.clamp(min=1.0)


class SAM2Loss(nn.Module):
    """SAM 2's training loss: focal + dice on the best of the predicted masks, IoU-prediction and object-score losses.

    For every frame and every prompting step (initial prompt and each correction click) of every object:

    - the mask losses (focal, mean over pixels; dice) are taken on the output mask with the lowest
      ``weight_mask * focal + weight_dice * dice`` when the decoder returned several (``M > 1``);
    - the IoU-prediction loss is the L1 (or MSE) error of the predicted IoUs against the real IoU of each mask,
      averaged over all ``M`` masks (``supervise_all_iou``) or taken on the best one;
    - mask and IoU losses count only where the object is present in the target (its mask is not empty);
    - the object-score loss is the binary cross-entropy (a focal loss with ``obj_score_focal_*``) of the
      object-score logit against "object present".

    Everything is summed over steps, objects and frames and divided by the number of objects per clip, averaged
    over ranks when ``torch.distributed`` is initialised (one all-reduce per call). The defaults are the official
    MOSE fine-tuning recipe; the returned numbers equal ``training.loss_fns.MultiStepMultiMasksAndIous``'s.

    Args:
        weight_dict: loss weights by key (``loss_mask``, ``loss_dice``, ``loss_iou``, ``loss_class``); the keys it
            holds take precedence over the ``weight_*`` arguments.
        weight_mask: weight of the focal loss.
        weight_dice: weight of the dice loss.
        weight_iou: weight of the IoU-prediction loss.
        weight_class: weight of the object-score loss.
        focal_alpha: focal loss alpha on masks.
        focal_gamma: focal loss gamma on masks.
        supervise_all_iou: supervise the predicted IoU of every output mask, not only the best one.
        iou_use_l1_loss: L1 error for the IoU prediction (else squared error).
        pred_obj_scores: the model predicts object scores; when False, ``loss_class`` is 0 and objects count as
            present on every frame.
        obj_score_focal_alpha: focal alpha on object scores (negative: no weighting).
        obj_score_focal_gamma: focal gamma on object scores (0: plain cross-entropy).
    """

    def __init__(
        self,
        weight_dict: Mapping[str, float] | None = None,
        *,
        weight_mask: float = 20.0,
        weight_dice: float = 1.0,
        weight_iou: float = 1.0,
        weight_class: float = 1.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        supervise_all_iou: bool = True,
        iou_use_l1_loss: bool = True,
        pred_obj_scores: bool = True,
        obj_score_focal_alpha: float = -1.0,
        obj_score_focal_gamma: float = 0.0,
    ) -> None:
        super().__init__()
        weights = {
            "loss_mask": weight_mask,
            "loss_dice": weight_dice,
            "loss_iou": weight_iou,
            "loss_class": weight_class,
        }
        unknown = set(weight_dict or {}) - set(LOSS_KEYS)
        if unknown:
            raise ValueError(f"unknown loss weight keys {sorted(unknown)}: expected some of {list(LOSS_KEYS)}")
        weights.update({key: float(value) for key, value in (weight_dict or {}).items()})
        self.weights = weights
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.supervise_all_iou = supervise_all_iou
        self.iou_use_l1_loss = iou_use_l1_loss
        self.pred_obj_scores = pred_obj_scores
        self.obj_score_focal_alpha = obj_score_focal_alpha
        self.obj_score_focal_gamma = obj_score_focal_gamma

    def forward(
        self, outputs: Sequence[Mapping[str, Sequence[torch.Tensor]]], targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Loss of a batch of clips.

        Args:
            outputs: one dict per frame (``T``) with, per prompting step, ``multistep_pred_multimasks_high_res``
                (list of ``[O, M, H, W]`` mask logits, ``M`` may change between steps),
                ``multistep_pred_ious`` (list of ``[O, M]``) and ``multistep_object_score_logits`` (list of
                ``[O, 1]``): the layout of SAM 2's ``SAM2Train`` outputs.
            targets: ``[T, O, H, W]`` GT masks (bool or 0/1 float).

        Returns:
            Scalars ``loss_mask``, ``loss_dice``, ``loss_iou``, ``loss_class`` (unweighted, summed) and ``core_loss``
            (their weighted sum, the value to back-propagate).
        """
        if targets.dim() != 4 or len(outputs) != targets.shape[0]:
            raise ValueError(
                f"targets must be [T, O, H, W] with T = len(outputs) = {len(outputs)}, got {tuple(targets.shape)}"
            )
        num_objects = self._num_objects(targets)
        # Losses in float32 whatever the autocast dtype of the logits: the sums over pixels lose too much in bf16.
        losses = dict.fromkeys(LOSS_KEYS, targets.new_zeros((), dtype=torch.float32))
        for frame, (frame_out, frame_targets) in enumerate(zip(outputs, targets)):
            steps = zip(
                frame_out["multistep_pred_multimasks_high_res"],
                frame_out["multistep_pred_ious"],
                frame_out["multistep_object_score_logits"],
                strict=True,
            )
            for masks, ious, object_scores in steps:
                step_losses = self._step_losses(
                    frame, masks.float(), ious.float(), object_scores.float(), frame_targets
                )
                for key in LOSS_KEYS:
                    losses[key] = losses[key] + step_losses[key] / num_objects
        losses[CORE_LOSS_KEY] = sum(
            (losses[key] * weight for key, weight in self.weights.items() if weight != 0),
            start=targets.new_zeros((), dtype=torch.float32),
        )
        return losses

    def _num_objects(self, targets: torch.Tensor) -> torch.Tensor:
        """Objects per clip, averaged over ranks so that every rank normalises its gradient the same way."""
        # A fill, not a host-to-device copy: no host sync inside the training step.
        num_objects = torch.full((), float(targets.shape[1]), device=targets.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(num_objects)
            num_objects = num_objects / dist.get_world_size()
        return num_objects.clamp(min=1.0)

    def _step_losses(
        self,
        frame: int,
        masks: torch.Tensor,
        ious: torch.Tensor,
        object_scores: torch.Tensor,
        targets: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Losses of one prompting step on one frame, summed over objects (not yet divided by their number)."""
        if masks.dim() != 4 or masks.shape[0] != targets.shape[0] or masks.shape[2:] != targets.shape[1:]:
            raise ValueError(
                f"frame {frame}: mask logits {tuple(masks.shape)} do not match targets {tuple(targets.shape)} "
                "as [O, M, H, W]"
            )
        num_objects, num_masks = masks.shape[:2]
        if ious.shape != (num_objects, num_masks) or object_scores.shape != (num_objects, 1):
            raise ValueError(
                f"frame {frame}: expected IoU predictions [{num_objects}, {num_masks}] and object scores "
                f"[{num_objects}, 1], got {tuple(ious.shape)} and {tuple(object_scores.shape)}"
            )
        target_masks = targets[:, None].to(masks.dtype).expand_as(masks)
        focal = sigmoid_focal_loss(masks, target_masks, self.focal_alpha, self.focal_gamma).flatten(2).mean(-1)
        dice = dice_loss(masks, target_masks)
        iou_error = ious - mask_iou(masks, target_masks)
        iou_loss = iou_error.abs() if self.iou_use_l1_loss else iou_error.square()

        if self.pred_obj_scores:
            present = targets.flatten(1).any(dim=1).to(masks.dtype)[:, None]  # [O, 1]
            loss_class = sigmoid_focal_loss(
                object_scores, present, self.obj_score_focal_alpha, self.obj_score_focal_gamma
            ).sum()
        else:
            present = masks.new_ones(num_objects, 1)
            loss_class = masks.new_zeros(())

        if num_masks > 1:
            # Only the best of the candidate masks is trained, as SAM: the others may cover other valid parts.
            best = (focal * self.weights["loss_mask"] + dice * self.weights["loss_dice"]).argmin(dim=1, keepdim=True)
            focal = focal.gather(1, best)
            dice = dice.gather(1, best)
            iou_loss = iou_loss.mean(dim=1, keepdim=True) if self.supervise_all_iou else iou_loss.gather(1, best)
        return {
            "loss_mask": (focal * present).sum(),
            "loss_dice": (dice * present).sum(),
            "loss_iou": (iou_loss * present).sum(),
            "loss_class": loss_class,
        }

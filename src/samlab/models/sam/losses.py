"""SAM's training loss for prompted masks: ``20 * focal + dice + MSE(predicted IoU, real IoU)``, best of multimask;
and the image-level soft Dice of the Detectron2-SAM integration (:func:`soft_dice_sums`, :func:`dice_from_sums`).

Built on the generic pieces of :mod:`samlab.losses`. Unlike :class:`samlab.losses.SAM2Loss` it returns sums over
objects and leaves the division to the caller, because SAM's objects are decoded in chunks and the per-image object
counts differ between ranks (a collective per chunk could deadlock).
"""

from __future__ import annotations

import torch
from torch import nn

from samlab.losses import dice_loss, mask_iou, sigmoid_focal_loss


class SAMPromptLoss(nn.Module):
    """Focal, dice and IoU-prediction losses of prompted masks, summed over objects.

    With several candidate masks per object (``M = 3``, a single click), only the one with the lowest
    ``weight_focal * focal + weight_dice * dice`` is trained, and the IoU prediction of that mask is supervised
    (SAM's "backpropagate only the minimum loss"). Focal loss is the mean over pixels.

    Args:
        weight_focal: weight of the focal loss (SAM: 20).
        weight_dice: weight of the dice loss (SAM: 1).
        weight_iou: weight of the IoU-prediction mean squared error (SAM: 1).
        focal_alpha: focal alpha (negative: off).
        focal_gamma: focal gamma.
    """

    def __init__(
        self,
        weight_focal: float = 20.0,
        weight_dice: float = 1.0,
        weight_iou: float = 1.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        self.weight_focal = weight_focal
        self.weight_dice = weight_dice
        self.weight_iou = weight_iou
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    def forward(
        self, logits: torch.Tensor, iou_pred: torch.Tensor, targets: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Losses of ``N`` objects.

        Args:
            logits: ``[N, M, H, W]`` mask logits.
            iou_pred: ``[N, M]`` predicted IoUs.
            targets: ``[N, H, W]`` bool (or 0/1) ground truth.

        Returns:
            ``({"loss_focal", "loss_dice", "loss_iou", "loss"}, best)``: the three unweighted losses and their
            weighted sum ``loss``, each summed over objects (float32 scalars), and ``best [N]``, the index of the
            trained mask of each object.
        """
        if logits.dim() != 4 or logits.shape[0] != targets.shape[0] or logits.shape[2:] != targets.shape[1:]:
            raise ValueError(
                f"logits {tuple(logits.shape)} do not match targets {tuple(targets.shape)} as [N, M, H, W]"
            )
        if iou_pred.shape != logits.shape[:2]:
            raise ValueError(f"iou_pred must be {tuple(logits.shape[:2])}, got {tuple(iou_pred.shape)}")
        logits = logits.float()
        target = targets[:, None].to(logits.dtype).expand_as(logits)
        focal = sigmoid_focal_loss(logits, target, self.focal_alpha, self.focal_gamma).flatten(2).mean(-1)
        dice = dice_loss(logits, target)
        iou_error = (iou_pred.float() - mask_iou(logits, target)).square()
        best = (self.weight_focal * focal + self.weight_dice * dice).argmin(dim=1)
        pick = best[:, None]
        losses = {
            "loss_focal": focal.gather(1, pick).sum(),
            "loss_dice": dice.gather(1, pick).sum(),
            "loss_iou": iou_error.gather(1, pick).sum(),
        }
        losses["loss"] = (
            self.weight_focal * losses["loss_focal"]
            + self.weight_dice * losses["loss_dice"]
            + self.weight_iou * losses["loss_iou"]
        )
        return losses, best


DICE_EPS = 1e-6
"""The smoothing of the Detectron2-SAM integration's Dice (``CustomSam.dice_loss``)."""


def soft_dice_sums(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[2]`` float32: ``sum(p t)`` and ``sum(p) + sum(t)`` over every pixel of ``[n, H, W]`` mask logits
    (``p`` their sigmoid) and ``[n, H, W]`` bool (or 0/1) targets: the parts of one soft Dice over several masks,
    which add up over chunks of the masks."""
    prob = logits.float().sigmoid()
    target = targets.to(prob.dtype)
    return torch.stack([(prob * target).sum(), prob.sum() + target.sum()])


def dice_from_sums(sums: torch.Tensor, eps: float = DICE_EPS) -> torch.Tensor:
    """The soft Dice loss ``1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)`` of :func:`soft_dice_sums`'
    ``[2]`` sums (one Dice over all the masks they were summed over)."""
    return 1 - (2 * sums[0] + eps) / (sums[1] + eps)

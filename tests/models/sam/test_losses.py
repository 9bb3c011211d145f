import math

import pytest
import torch

from samlab.losses import SAM2Loss
from samlab.models.sam.losses import SAMPromptLoss


def test_one_pixel_by_hand():
    # one object, one mask, 1x2 image: logits (0, 0) -> p = 0.5; target (1, 0)
    logits = torch.zeros(1, 1, 1, 2)
    targets = torch.tensor([[[True, False]]])
    losses, best = SAMPromptLoss()(logits, torch.tensor([[0.5]]), targets)
    # focal per pixel: ce = ln 2, (1 - p_t)^2 = 0.25, alpha 0.25 (positive) / 0.75 (negative); mean of the two
    focal = (0.25 * 0.25 * math.log(2) + 0.75 * 0.25 * math.log(2)) / 2
    dice = 1 - (2 * 0.5 + 1) / (1.0 + 1 + 1)
    iou = 0.0  # logits > 0 is empty: IoU 0, predicted 0.5
    assert float(losses["loss_focal"]) == pytest.approx(focal)
    assert float(losses["loss_dice"]) == pytest.approx(dice)
    assert float(losses["loss_iou"]) == pytest.approx((0.5 - iou) ** 2)
    assert float(losses["loss"]) == pytest.approx(20 * focal + dice + 0.25)
    assert best.tolist() == [0]


def test_best_of_three_masks_is_trained():
    targets = torch.zeros(2, 8, 8, dtype=torch.bool)
    targets[:, 2:6, 2:6] = True
    good = torch.where(targets, 8.0, -8.0)
    logits = torch.stack([-good, good * 0.1, good], dim=1)  # mask 2 is right for both objects
    logits[1] = logits[1].roll(1, dims=0)  # object 1: the right mask is index 0
    iou_pred = torch.rand(2, 3)
    losses, best = SAMPromptLoss()(logits, iou_pred, targets)
    assert best.tolist() == [2, 0]
    single, _ = SAMPromptLoss()(
        torch.stack([logits[0, 2:3], logits[1, 0:1]]), iou_pred[[0, 1], [2, 0]][:, None], targets
    )
    for key in losses:
        assert float(losses[key]) == pytest.approx(float(single[key]))


def test_equals_sam2_loss_configured_as_sam():
    torch.manual_seed(0)
    logits = torch.randn(3, 3, 16, 16)
    iou_pred = torch.rand(3, 3)
    targets = torch.rand(3, 16, 16) > 0.6
    ours, _ = SAMPromptLoss()(logits, iou_pred, targets)
    reference = SAM2Loss(pred_obj_scores=False, iou_use_l1_loss=False, supervise_all_iou=False)(
        [
            {
                "multistep_pred_multimasks_high_res": [logits],
                "multistep_pred_ious": [iou_pred],
                "multistep_object_score_logits": [torch.zeros(3, 1)],
            }
        ],
        targets[None],
    )
    # SAM2Loss divides by the objects; ours leaves the sum to the caller
    assert float(ours["loss"]) / 3 == pytest.approx(float(reference["core_loss"]), rel=1e-5)
    assert float(ours["loss_focal"]) / 3 == pytest.approx(float(reference["loss_mask"]), rel=1e-5)


def test_shape_checks():
    with pytest.raises(ValueError, match="do not match"):
        SAMPromptLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1), torch.zeros(1, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="iou_pred"):
        SAMPromptLoss()(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1), torch.zeros(1, 4, 4, dtype=torch.bool))


def test_image_dice_equals_the_detectron2_sam_integrations():
    """Golden outputs of ``CustomSam.dice_loss`` (tests/models/sam/golden/README.md): one soft Dice over all masks
    of an image, from sums that add up over chunks of the masks."""
    import json
    from pathlib import Path

    from samlab.models.sam.losses import dice_from_sums, soft_dice_sums

    golden = json.loads((Path(__file__).parent / "golden" / "detectron2_sam_dice.json").read_text())
    losses = []
    for image in golden["images"]:
        prob, target = torch.tensor(image["prob"]), torch.tensor(image["target"]).bool()
        logits = torch.logit(prob.double()).float()
        whole = dice_from_sums(soft_dice_sums(logits, target))
        chunked = dice_from_sums(soft_dice_sums(logits[:1], target[:1]) + soft_dice_sums(logits[1:], target[1:]))
        assert float(whole) == pytest.approx(image["dice_loss"], rel=1e-6)
        assert float(chunked) == pytest.approx(image["dice_loss"], rel=1e-6)
        losses.append(float(whole))
    assert sum(losses) / len(losses) == pytest.approx(golden["batch_loss"], rel=1e-6)

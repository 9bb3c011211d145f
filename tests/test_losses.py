"""SAM 2 losses: the loss functions' numbers, and SAM2Loss against the official MultiStepMultiMasksAndIous."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from samlab.losses import CORE_LOSS_KEY, SAM2Loss, dice_loss, mask_iou, sigmoid_focal_loss

MOSE_WEIGHTS = {"loss_mask": 20, "loss_dice": 1, "loss_iou": 1, "loss_class": 1}
KEYS = ("loss_mask", "loss_dice", "loss_iou", "loss_class", CORE_LOSS_KEY)


def make_outputs(steps_per_frame: list[list[int]], num_objects: int = 3, size: int = 16, seed: int = 0):
    """Random SAM2Train-style outputs: ``steps_per_frame[t]`` lists the mask count M of each prompting step."""
    g = torch.Generator().manual_seed(seed)
    outputs = []
    for steps in steps_per_frame:
        outputs.append(
            {
                "multistep_pred_multimasks_high_res": [
                    3 * torch.randn(num_objects, m, size, size, generator=g) for m in steps
                ],
                "multistep_pred_ious": [torch.rand(num_objects, m, generator=g) for m in steps],
                "multistep_object_score_logits": [2 * torch.randn(num_objects, 1, generator=g) for _ in steps],
            }
        )
    targets = torch.rand(len(steps_per_frame), num_objects, size, size, generator=g) > 0.6
    return outputs, targets


# Frame 0: first click with 3 masks then two single-mask correction steps; frame 1: one single-mask step;
# frame 2: one 3-mask step. Object 1 is absent on frame 1, object 2 on frame 2, object 0 on frame 0.
STEPS = [[3, 1, 1], [1], [3]]


def absent_objects(targets: torch.Tensor) -> torch.Tensor:
    targets = targets.clone()
    targets[0, 0] = False
    targets[1, 1] = False
    targets[2, 2] = False
    return targets


def official_loss(**kwargs):
    loss_fns = pytest.importorskip("training.loss_fns")
    return loss_fns.MultiStepMultiMasksAndIous(**kwargs)


def test_sigmoid_focal_loss_numbers():
    logits = torch.tensor([2.0, -1.0, 0.5])
    targets = torch.tensor([1.0, 0.0, 0.0])
    # alpha < 0 and gamma 0: plain binary cross-entropy.
    torch.testing.assert_close(
        sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0),
        F.binary_cross_entropy_with_logits(logits, targets, reduction="none"),
    )
    p = 1 / (1 + math.exp(-2.0))
    expected_pos = 0.25 * (1 - p) ** 2 * -math.log(p)  # positive: alpha * (1 - p)^2 * CE
    q = 1 / (1 + math.exp(-0.5))
    expected_neg = 0.75 * q**2 * -math.log(1 - q)  # negative: (1 - alpha) * p^2 * CE
    loss = sigmoid_focal_loss(logits, targets)
    assert loss[0].item() == pytest.approx(expected_pos, rel=1e-5)
    assert loss[2].item() == pytest.approx(expected_neg, rel=1e-5)


def test_dice_loss_and_mask_iou_numbers():
    target = torch.zeros(1, 4, 4)
    target[0, :2, :2] = 1  # 4 pixels
    confident = torch.where(target > 0, 50.0, -50.0)
    assert dice_loss(confident, target).item() == pytest.approx(0.0, abs=1e-6)
    # An all-zero-probability prediction: 1 - 1 / (0 + 4 + 1).
    assert dice_loss(torch.full((1, 4, 4), -50.0), target).item() == pytest.approx(0.8, abs=1e-6)
    # Probability 0.5 everywhere: 1 - (2 * 2 + 1) / (8 + 4 + 1).
    assert dice_loss(torch.zeros(1, 4, 4), target).item() == pytest.approx(1 - 5 / 13, abs=1e-6)

    pred = torch.full((1, 4, 4), -1.0)
    pred[0, :2, :3] = 1.0  # 6 pixels, 4 of them inside the target
    assert mask_iou(pred, target).item() == pytest.approx(4 / 6)
    assert mask_iou(torch.full((1, 4, 4), -1.0), torch.zeros(1, 4, 4)).item() == 0.0


@pytest.mark.parametrize("steps", [STEPS, [[1], [1, 1]]], ids=["multimask", "single-mask"])
def test_matches_official_mose_loss(steps):
    outputs, targets = make_outputs(steps)
    targets = absent_objects(targets) if len(steps) == 3 else targets
    official = official_loss(
        weight_dict=dict(MOSE_WEIGHTS),
        supervise_all_iou=True,
        iou_use_l1_loss=True,
        pred_obj_scores=True,
        focal_gamma_obj_score=0.0,
        focal_alpha_obj_score=-1.0,
    )(outputs, targets)
    ours = SAM2Loss()(outputs, targets)
    for key in KEYS:
        torch.testing.assert_close(ours[key], torch.as_tensor(official[key]), msg=key)
    assert ours["loss_class"] > 0 and ours["loss_iou"] > 0


def test_matches_official_other_settings():
    """Weights by dict and keyword, IoU on the best mask with MSE, no object scores, focal on object scores."""
    outputs, targets = make_outputs(STEPS, seed=1)
    targets = absent_objects(targets)
    weights = {"loss_mask": 5.0, "loss_dice": 2.0, "loss_iou": 0.5, "loss_class": 0.0}
    official = official_loss(weight_dict=dict(weights), supervise_all_iou=False, iou_use_l1_loss=False)
    ours = SAM2Loss(
        {"loss_mask": 5.0, "loss_dice": 2.0},
        weight_iou=0.5,
        weight_class=0.0,
        supervise_all_iou=False,
        iou_use_l1_loss=False,
        pred_obj_scores=False,
    )
    expected, got = official(outputs, targets), ours(outputs, targets)
    for key in KEYS:
        torch.testing.assert_close(got[key], torch.as_tensor(expected[key], dtype=torch.float32), msg=key)

    official = official_loss(
        weight_dict=dict(MOSE_WEIGHTS), pred_obj_scores=True, focal_alpha_obj_score=0.3, focal_gamma_obj_score=1.5
    )
    ours = SAM2Loss(
        supervise_all_iou=False, iou_use_l1_loss=False, obj_score_focal_alpha=0.3, obj_score_focal_gamma=1.5
    )
    torch.testing.assert_close(ours(outputs, targets)["loss_class"], official(outputs, targets)["loss_class"])


def test_absent_object_only_trains_object_score():
    outputs, targets = make_outputs(STEPS, seed=2)
    targets = absent_objects(targets)
    loss = SAM2Loss()
    before = loss(outputs, targets)
    # Object 1 is absent on frame 1: its masks and IoUs there must not matter, its object score must.
    outputs[1]["multistep_pred_multimasks_high_res"][0][1] += 7.0
    outputs[1]["multistep_pred_ious"][0][1] = 0.0
    after_masks = loss(outputs, targets)
    for key in ("loss_mask", "loss_dice", "loss_iou", "loss_class"):
        torch.testing.assert_close(after_masks[key], before[key], msg=key)
    outputs[1]["multistep_object_score_logits"][0][1] += 3.0
    assert loss(outputs, targets)["loss_class"] > before["loss_class"]


def test_best_mask_gets_gradient_and_perfect_prediction_is_cheap():
    targets = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    targets[0, 0, 2:6, 2:6] = True
    perfect = torch.where(targets[0], 20.0, -20.0)[:, None]  # [O=1, 1, H, W]
    masks = torch.cat([torch.zeros_like(perfect), perfect, -perfect], dim=1).requires_grad_(True)
    outputs = [
        {
            "multistep_pred_multimasks_high_res": [masks],
            "multistep_pred_ious": [torch.tensor([[0.0, 1.0, 0.0]])],
            "multistep_object_score_logits": [torch.tensor([[20.0]])],
        }
    ]
    losses = SAM2Loss(supervise_all_iou=False)(outputs, targets)
    assert losses["loss_mask"].item() < 1e-6 and losses["loss_dice"].item() < 1e-6
    assert losses["loss_iou"].item() == pytest.approx(0.0, abs=1e-6)
    losses[CORE_LOSS_KEY].backward()
    # Only the best (perfect) candidate is supervised; the other two get no gradient.
    assert masks.grad[0, 0].abs().sum() == 0 and masks.grad[0, 2].abs().sum() == 0


def test_normalises_by_objects_averaged_over_ranks(monkeypatch):
    outputs, targets = make_outputs(STEPS, seed=3)  # 3 objects here
    local = SAM2Loss()(outputs, targets)

    def all_reduce(tensor):
        tensor += 5.0  # the other rank has 5 objects: (3 + 5) / 2 = 4 per rank

    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    distributed = SAM2Loss()(outputs, targets)
    for key in KEYS:
        torch.testing.assert_close(distributed[key], local[key] * 3 / 4, msg=key)


def test_rejects_bad_shapes_and_weight_keys():
    outputs, targets = make_outputs(STEPS)
    with pytest.raises(ValueError, match="T = len"):
        SAM2Loss()(outputs[:2], targets)
    with pytest.raises(ValueError, match="frame 0"):
        SAM2Loss()(outputs, targets[:, :2])
    outputs[2]["multistep_pred_ious"][0] = torch.rand(3, 1)
    with pytest.raises(ValueError, match="frame 2: expected IoU"):
        SAM2Loss()(outputs, targets)
    with pytest.raises(ValueError, match="loss_focal"):
        SAM2Loss({"loss_focal": 1.0})

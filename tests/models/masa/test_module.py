"""MASAModule: the learning-rate schedule (linear warm-up, step decay), SGD groups, tracker settings."""

from __future__ import annotations

import pytest
import torch

from samlab.models.masa.module import MASAModule
from samlab.models.masa.tracker import MASATracker

TINY = {"backbone": "resnet18", "image_size": 64, "channels": 16, "fusion_blocks": 1, "fc_channels": 32}


def test_lr_factor_warmup_and_steps():
    module = MASAModule(**TINY, warmup_iters=100, warmup_ratio=0.001, milestones=[8, 11], gamma=0.1)
    assert module.lr_factor(0, 0) == pytest.approx(0.001)
    assert module.lr_factor(50, 0) == pytest.approx(0.001 + 0.999 * 0.5)
    assert module.lr_factor(100, 0) == 1.0
    assert module.lr_factor(5000, 7) == 1.0
    assert module.lr_factor(5000, 8) == pytest.approx(0.1)
    assert module.lr_factor(5000, 11) == pytest.approx(0.01)
    assert module.lr_factor(10, 8) == pytest.approx((0.001 + 0.999 * 0.1) * 0.1)


def test_optimizer_is_sgd_over_trained_parameters_only():
    module = MASAModule(
        **{**TINY, "backbone": "sam"},
        lr=0.02,
        momentum=0.9,
        weight_decay=1e-4,
        backbone_options={
            "overrides": {
                "embed_dim": 16,
                "depth": 4,
                "num_heads": 2,
                "global_attn_indexes": [0, 1, 2, 3],
                "window_size": 2,
            }
        },
    )
    optimizers = module.configure_optimizers()
    optimizer = optimizers["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["momentum"], group["weight_decay"]) == (0.9, 1e-4)
    trained = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert sum(p.numel() for p in group["params"]) == trained
    assert trained < sum(p.numel() for p in module.parameters())  # the SAM encoder is frozen
    assert group["lr"] == pytest.approx(0.02 * 0.001)  # the first step is warmed up
    assert optimizers["lr_scheduler"]["interval"] == "step"


def test_tracker_settings_are_checked_and_used():
    module = MASAModule(**TINY, tracker={"match_score_thr": 0.3, "memo_tracklet_frames": 4})
    tracker = module.make_tracker()
    assert isinstance(tracker, MASATracker) and (tracker.match_score_thr, tracker.memo_tracklet_frames) == (0.3, 4)
    with pytest.raises(TypeError, match="unknown_setting"):
        MASAModule(**TINY, tracker={"unknown_setting": 1})


def test_validation_images_colour_reference_boxes_by_their_best_key_match():
    from samlab.data.pairs import PairBatch

    module = MASAModule(**TINY)
    images = torch.zeros(1, 3, 64, 64)
    boxes = torch.tensor([[4.0, 4.0, 20.0, 20.0], [30.0, 30.0, 60.0, 60.0]])
    ids = [torch.tensor([1, 2])], [torch.tensor([2, 1])]
    batch = PairBatch(images, images.clone(), [boxes], [boxes.flip(0)], *ids, names=["img"])
    key_embeds = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ref_embeds = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # ref box 0 is key 1, ref box 1 is key 0
    [(_, strip)] = module.validation_images(batch, {"key_embeds": [key_embeds], "ref_embeds": [ref_embeds]})
    key, ref = strip[:, :64], strip[:, 66:]
    assert (key[4, 4:21] == key[4, 4]).all() and key[4, 4].any()  # top edge of key box 0 in its colour
    assert (ref[4, 4] == key[4, 4]).all()  # ref box 1 (same place) matched key 0: same colour
    assert (ref[30, 30] == key[30, 30]).all() and not (key[30, 30] == key[4, 4]).all()

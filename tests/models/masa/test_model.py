"""MASA's torch parts: losses on hand cases, RoI sampling, backbones, adapter, model losses and matching accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from samlab.errors import DataError
from samlab.models.masa.adapter import MASAAdapter
from samlab.models.masa.backbones import SAMBackbone, build_backbone
from samlab.models.masa.heads import EmbedHead, sample_track_rois
from samlab.models.masa.losses import margin_l2_loss, multi_positive_contrastive_loss
from samlab.models.masa.model import MASAModel, matching_accuracy

TINY_SAM = {"embed_dim": 32, "depth": 4, "num_heads": 2, "global_attn_indexes": [0, 1, 2, 3], "window_size": 2}


def test_multi_positive_contrastive_loss_hand_cases():
    # One positive: plain softmax cross-entropy.
    one = multi_positive_contrastive_loss(torch.tensor([[2.0, 0.0, 1.0]]), torch.tensor([[1, 0, 0]]))
    assert one.item() == pytest.approx(math.log(1 + math.exp(-2) + math.exp(-1)))
    # Two positives: their mass is averaged in the denominator (MASA's unbiased form).
    two = multi_positive_contrastive_loss(torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[1, 1, 0]]))
    assert two.item() == pytest.approx(math.log(math.e + 1) - 1)
    # Rows without a positive are left out of the mean.
    both = multi_positive_contrastive_loss(
        torch.tensor([[2.0, 0.0, 1.0], [5.0, 5.0, 5.0]]), torch.tensor([[1, 0, 0], [0, 0, 0]])
    )
    assert both.item() == pytest.approx(one.item())
    assert multi_positive_contrastive_loss(torch.ones(2, 2), torch.zeros(2, 2)).item() == 0.0


def test_margin_l2_loss_hand_case_with_hard_mining():
    cosine = torch.tensor([[0.9, 0.05, 0.5, 0.3, 0.2]])
    targets = torch.tensor([[1, 0, 0, 0, 0]])
    # Positive: (0.9 - 1)^2 = 0.01. Negatives minus the 0.1 margin: 0, 0.4, 0.2, 0.1 -> costs 0, .16, .04, .01;
    # 4 negatives > 3 x 1 positive: the 3 hardest are kept.
    loss = margin_l2_loss(cosine, targets)
    assert loss.item() == pytest.approx((0.01 + 0.16 + 0.04 + 0.01) / 4)
    everything = margin_l2_loss(cosine, targets, neg_pos_ub=-1)
    assert everything.item() == pytest.approx((0.01 + 0 + 0.16 + 0.04 + 0.01) / 5)


def test_sample_track_rois_thresholds_and_limits():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    ids = torch.tensor([7, 9])
    proposals = torch.tensor(
        [
            [0.0, 0.0, 10.0, 11.0],  # IoU 0.91 with gt 0: positive
            [0.0, 0.0, 10.0, 16.0],  # IoU 0.625: ignored
            [0.0, 0.0, 10.0, 40.0],  # IoU 0.25: negative
            [50.0, 50.0, 60.0, 60.0],  # no overlap: negative
        ]
        + [[100.0 + i, 0.0, 110.0 + i, 10.0] for i in range(20)]  # more negatives
    )
    sampled = sample_track_rois(proposals, gt, ids, generator=torch.Generator().manual_seed(0))
    positives = sampled.boxes[sampled.positive]
    assert len(positives) == 3  # the two gt boxes and proposal 0
    assert sorted(sampled.instance_ids[sampled.positive].tolist()) == [7, 7, 9]
    assert int((~sampled.positive).sum()) == 9  # at most 3 negatives per positive
    assert not (sampled.boxes == proposals[1]).all(dim=1).any()
    # Instance balance: with room for 2 positives, one of each instance.
    balanced = sample_track_rois(proposals, gt, ids, num=4, pos_fraction=0.5)
    assert sorted(balanced.instance_ids[balanced.positive].tolist()) == [7, 9]


@pytest.mark.parametrize(
    ("name", "options", "channels", "strides"),
    [
        ("resnet18", {}, [64, 128, 256, 512], [4, 8, 16, 32]),
        ("sam", {"overrides": TINY_SAM}, [32] * 4, [16] * 4),
        (
            "sam2",
            {
                "variant": "sam2.1_hiera_t",
                "overrides": [
                    "++model.image_encoder.trunk.embed_dim=32",
                    "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
                ],
            },
            [32, 64, 128, 256],
            [4, 8, 16, 32],
        ),
    ],
)
def test_backbones_and_adapter_shapes(name, options, channels, strides):
    backbone = build_backbone(name, 64, options=options)
    assert backbone.out_channels == channels and backbone.strides == strides
    features = backbone(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in features] == channels
    assert [64 // f.shape[-1] for f in features] == strides
    assert backbone.frozen == (name != "resnet18")
    assert all(not p.requires_grad for p in backbone.parameters()) == backbone.frozen
    adapter = MASAAdapter(backbone.out_channels, backbone.strides, out_channels=16, num_blocks=1)
    pyramid = adapter(features)
    assert [64 // p.shape[-1] for p in pyramid.values()] == adapter.strides
    assert adapter.strides[-1] == 64 and all(p.shape[1] == 16 for p in pyramid.values())


def test_sam_checkpoint_loads_with_position_tables_resized(tmp_path):
    source = SAMBackbone(image_size=64, overrides=TINY_SAM)
    state = {f"image_encoder.{k}": v for k, v in source.encoder.state_dict().items()}
    state["prompt_encoder.dummy"] = torch.zeros(1)
    path = tmp_path / "sam_tiny.pth"
    torch.save(state, path)
    same = SAMBackbone(image_size=64, overrides=TINY_SAM, checkpoint=path)
    torch.testing.assert_close(same.encoder.blocks[0].attn.qkv.weight, source.encoder.blocks[0].attn.qkv.weight)
    smaller = SAMBackbone(image_size=32, overrides=TINY_SAM, checkpoint=path)
    assert smaller.encoder.pos_embed.shape == (1, 2, 2, 32)
    torch.testing.assert_close(smaller.encoder.patch_embed.proj.weight, source.encoder.patch_embed.proj.weight)
    with pytest.raises(DataError, match="missing"):
        SAMBackbone(image_size=64, overrides=TINY_SAM, checkpoint=tmp_path / "none.pth")


def test_embed_head_and_matching_accuracy():
    head = EmbedHead(16, conv_channels=16, fc_channels=32, embed_channels=8)
    assert head(torch.randn(5, 16, 7, 7)).shape == (5, 8)
    key = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    ref = torch.tensor([[0.0, 2.0], [2.0, 0.1]])
    # Key 0 -> ref id 5 (right), key 1 -> ref id 4 (right), key 2's id is not in the reference view.
    assert matching_accuracy(key, ref, torch.tensor([5, 4, 3]), torch.tensor([4, 5])) == (2, 2)
    assert matching_accuracy(key, ref, torch.tensor([4, 5, 3]), torch.tensor([4, 5])) == (0, 2)


def test_model_losses_train_every_head():
    torch.manual_seed(0)
    model = MASAModel(
        build_backbone("resnet18", 64), channels=16, fusion_blocks=1, anchor_scale=2.0, fc_channels=32, roi_samples=32
    ).train()
    boxes = [torch.tensor([[4.0, 4.0, 28.0, 30.0], [34.0, 30.0, 60.0, 52.0]])]
    ids = [torch.tensor([3, 4])]
    losses = model.loss(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64), boxes, ids, boxes, ids)
    assert set(losses) == {
        "loss_objectness",
        "loss_rpn_box_reg",
        "loss_classifier",
        "loss_box_reg",
        "loss_track",
        "loss_track_aux",
    }
    assert all(torch.isfinite(v) and v >= 0 for v in losses.values())
    assert losses["loss_track"] > 0
    sum(losses.values()).backward()
    for part in (model.adapter, model.rpn, model.roi_heads, model.embed_head, model.backbone):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), type(part).__name__
    model.eval()
    with torch.no_grad():
        features = model.features(torch.randn(2, 3, 64, 64))
        assert model.embed(features, [boxes[0], boxes[0][:1]], (64, 64)).shape == (3, 256)
        assert model.embed(features, [torch.zeros(0, 4), torch.zeros(0, 4)], (64, 64)).shape == (0, 256)
        detections = model.detect(features, (64, 64))
    assert len(detections) == 2 and set(detections[0]) == {"boxes", "scores", "labels"}
    assert not model.training

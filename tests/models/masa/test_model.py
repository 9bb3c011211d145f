"""MASA's torch parts: losses on hand cases, RoI sampling and pooling (mmdet's rules), backbones, the DyHead and
DeformFusion adapters, model losses (detector on the key view) and matching accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from samlab.errors import DataError
from samlab.models.masa.adapter import DeformableFusionBlock, DyHeadBlock, DyReLU, MASAAdapter, _leading_planes
from samlab.models.masa.backbones import SAMBackbone, build_backbone
from samlab.models.masa.heads import EmbedHead, LevelRoIAlign, box_losses, sample_track_rois
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


def test_embed_head_initialisation_is_mmdets():
    """MASA's embed head is mmdet's ``QuasiDenseEmbedHead``: Xavier-uniform fc (bias 0), ``fc_embed`` normal std 0.01
    (bias 0), mmcv ``ConvModule`` convs Kaiming-normal fan-out (ReLU), GroupNorm 1 / 0."""
    torch.manual_seed(0)
    head = EmbedHead(64, conv_channels=64, fc_channels=256, embed_channels=128)
    convs = [m for m in head.convs if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(c.bias is None for c in convs)
    for conv in convs:  # kaiming normal, fan_out = 64 * 3 * 3: std sqrt(2 / 576) = 0.0589
        assert conv.weight.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.03)
    for norm in (m for m in head.convs if isinstance(m, torch.nn.GroupNorm)):
        assert norm.num_groups == 32 and bool((norm.weight == 1).all()) and bool((norm.bias == 0).all())
    fc = head.fc[1]
    bound = (6 / (64 * 49 + 256)) ** 0.5  # xavier uniform: U(-b, b), b = sqrt(6 / (fan_in + fan_out)) = 0.0421
    assert fc.weight.abs().max().item() <= bound and fc.weight.abs().max().item() > 0.99 * bound
    assert fc.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.01)
    assert bool((fc.bias == 0).all()) and bool((head.embed.bias == 0).all())
    assert head.embed.weight.std().item() == pytest.approx(0.01, rel=0.03)


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


def test_roi_levels_and_aligned_pooling_follow_mmdet():
    """mmdet's ``SingleRoIExtractor`` level rule ``floor(log2(sqrt(wh) / 56 + 1e-6))`` and ``RoIAlign(aligned)``."""
    pool = LevelRoIAlign(["p0", "p1", "p2", "p3"], [4, 8, 16, 32], output_size=7)
    sides = torch.tensor([20.0, 111.0, 112.0, 223.0, 224.0, 448.0, 2000.0])
    boxes = torch.stack([torch.zeros_like(sides), torch.zeros_like(sides), sides, sides], dim=1)
    assert pool.levels(boxes).tolist() == [0, 0, 1, 1, 2, 3, 3]
    assert LevelRoIAlign(["p0", "p1", "p2"], [8, 16, 32]).levels(boxes).tolist() == [0, 0, 1, 1, 2, 2, 2]
    # A ramp f[i] = i on a stride-1 map: aligned pooling samples bin centres half a pixel back (pixel centres at +0.5).
    ramp = torch.arange(16.0).expand(1, 1, 16, 16).contiguous()
    single = LevelRoIAlign(["p0"], [1], output_size=7)
    pooled = single({"p0": ramp}, [torch.tensor([[0.0, 0.0, 14.0, 14.0]])])
    expected = (torch.arange(7.0) + 0.5) * 2.0 - 0.5
    torch.testing.assert_close(pooled[0, 0, 0], expected)
    features = {f"p{i}": torch.randn(2, 3, 64 // s, 64 // s) for i, s in enumerate([4, 8, 16, 32])}
    out = pool(features, [torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[0.0, 0.0, 60.0, 60.0]] * 2)])
    assert out.shape == (3, 3, 7, 7)


def test_box_losses_are_l1_over_sampled_rois():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    deltas = torch.tensor([[9.0] * 8, [0.0, 0.0, 0.0, 0.0, 0.5, -0.5, 1.0, 0.0], [9.0] * 8])
    labels = [torch.tensor([0, 1]), torch.tensor([0])]
    targets = [torch.zeros(2, 4), torch.zeros(1, 4)]
    losses = box_losses(logits, deltas, labels, targets)
    # Only RoI 1 is positive: |0.5| + |-0.5| + |1| + 0 over the 3 sampled RoIs (mmdet's avg_factor).
    assert losses["loss_box_reg"].item() == pytest.approx(2.0 / 3)
    expected_ce = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 0]))
    assert losses["loss_classifier"].item() == pytest.approx(expected_ce.item())


def test_dyhead_and_deform_fusion_blocks():
    torch.manual_seed(0)
    levels = [torch.randn(2, 16, 16 // 2**i, 16 // 2**i) for i in range(3)]
    dyhead, fusion = DyHeadBlock(16, 16), DeformableFusionBlock(16, 16)
    assert dyhead.offsets.out_channels == 27 and fusion.offsets.out_channels == 81  # shared / per-branch offsets
    for block in (dyhead, fusion):
        out = block(levels)
        assert [tuple(o.shape) for o in out] == [tuple(x.shape) for x in levels]
    # DyReLU with zeroed convolutions is a ReLU (a1 = 1, b1 = a2 = b2 = 0); the scale attention is 1/2.
    relu = DyReLU(16)
    for module in relu.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)
    torch.testing.assert_close(relu(levels[0]), levels[0].clamp(min=0))
    torch.nn.init.zeros_(dyhead.scale_attention[1].weight)
    torch.nn.init.zeros_(dyhead.scale_attention[1].bias)
    assert (dyhead.scale_attention(levels[0]) == 0.5).all()
    # The coarser branch reads the offsets as mmcv's kernel does: the leading h * w values of each sample.
    x = torch.arange(2 * 3 * 4 * 4.0).reshape(2, 3, 4, 4)
    torch.testing.assert_close(_leading_planes(x, torch.Size([2, 2])), x.flatten(1)[:, :12].reshape(2, 3, 2, 2))
    assert MASAAdapter([16] * 4, [16] * 4, out_channels=16, num_blocks=1, fusion="dyhead").fusion[0].shared_offsets
    with pytest.raises(ValueError, match="fusion"):
        MASAAdapter([16] * 4, [16] * 4, fusion="fpn")


def test_resnet_keeps_batchnorm_statistics_frozen():
    backbone = build_backbone("resnet18", 64).train()
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(not m.training for m in norms) and all(m.weight.requires_grad for m in norms)
    before = norms[0].running_mean.clone()
    backbone(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(norms[0].running_mean, before)
    assert build_backbone("resnet18", 64, options={"norm_eval": False}).train().stem[1].training


def test_detector_losses_come_from_the_key_view_only():
    torch.manual_seed(0)
    model = MASAModel(
        build_backbone("resnet18", 64), channels=16, fusion_blocks=1, anchor_scale=2.0, fc_channels=32, roi_samples=32
    ).train()
    key, ref = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    boxes = [torch.tensor([[4.0, 4.0, 28.0, 30.0], [34.0, 30.0, 60.0, 52.0]])]
    ids = [torch.tensor([3, 4])]
    other = [torch.tensor([[10.0, 10.0, 20.0, 20.0]])]
    torch.manual_seed(1)
    first = model.loss(key, ref, boxes, ids, boxes, ids)
    torch.manual_seed(1)
    second = model.loss(key, ref, boxes, ids, other, [torch.tensor([3])])
    for name in ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"):
        assert first[name].item() == second[name].item(), name
    assert first["loss_track"].item() != second["loss_track"].item()
    assert model.rpn.training

"""SAM 2 optimiser groups and schedule: explicit numbers on a toy model, the official recipe on a real SAM 2."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from samlab.models.sam2.optim import cosine_lr_factor, cosine_schedule, sam2_param_groups


class ToyTrunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4))
        self.patch_embed = nn.Linear(4, 4)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 4)) for _ in range(3))


class ToySAM2(nn.Module):
    """The SAM 2 layout in miniature: image_encoder.{trunk,neck} and a mask decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.image_encoder = nn.Module()
        self.image_encoder.trunk = ToyTrunk()
        self.image_encoder.neck = nn.Linear(4, 4)
        self.mask_decoder = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 4))


def settings_by_name(groups: list[dict]) -> dict[str, tuple[float, float]]:
    return {name: (g["lr"], g["weight_decay"]) for g in groups for name in g["param_names"]}


def test_layer_decay_vision_lr_and_weight_decay_numbers():
    settings = settings_by_name(sam2_param_groups(ToySAM2(), lr=1.0, vision_lr=0.5, weight_decay=0.1, layer_decay=0.9))
    trunk = "image_encoder.trunk."
    # 3 blocks: block i scaled 0.9 ** (3 - i), the patch embedding 0.9 ** 4, the position embedding kept at 1.
    for i in range(3):
        assert settings[f"{trunk}blocks.{i}.1.weight"] == pytest.approx((0.5 * 0.9 ** (3 - i), 0.1))
        assert settings[f"{trunk}blocks.{i}.1.bias"] == pytest.approx((0.5 * 0.9 ** (3 - i), 0.0))
        assert settings[f"{trunk}blocks.{i}.0.weight"] == pytest.approx((0.5 * 0.9 ** (3 - i), 0.0))  # LayerNorm
    assert settings[f"{trunk}patch_embed.weight"] == pytest.approx((0.5 * 0.9**4, 0.1))
    assert settings[f"{trunk}pos_embed"] == pytest.approx((0.5, 0.1))
    assert settings["image_encoder.neck.weight"] == pytest.approx((0.5, 0.1))
    assert settings["mask_decoder.0.weight"] == pytest.approx((1.0, 0.1))
    assert settings["mask_decoder.1.weight"] == pytest.approx((1.0, 0.0))
    assert settings["no_mem_embed"] == pytest.approx((1.0, 0.1))


def test_groups_merge_equal_settings_skip_frozen_and_work_with_adamw():
    model = ToySAM2()
    model.mask_decoder.requires_grad_(False)
    groups = sam2_param_groups(model, lr=1e-3, vision_lr=None, layer_decay=None)
    names = [name for g in groups for name in g["param_names"]]
    assert not any(name.startswith("mask_decoder") for name in names)
    assert sorted(names) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    # Without layer decay and vision lr everything shares lr: one group with and one without weight decay.
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(1e-3, 0.1), (1e-3, 0.0)]
    optimizer = torch.optim.AdamW(groups)
    model.image_encoder.trunk.pos_embed.grad = torch.ones(1, 4)
    optimizer.step()
    assert model.image_encoder.trunk.pos_embed.detach().allclose(torch.full((1, 4), -1e-3))
    # A model without the trunk path gets no layer decay (and no error).
    plain = sam2_param_groups(nn.Linear(2, 2), lr=0.1)
    assert [(g["param_names"], g["lr"], g["weight_decay"]) for g in plain] == [
        (["weight"], 0.1, 0.1),
        (["bias"], 0.1, 0.0),
    ]
    with pytest.raises(ValueError, match="layer_decay"):
        sam2_param_groups(model, lr=0.1, layer_decay=1.5)


def official_optimizer(model: nn.Module):
    """The official MOSE recipe's optimizer, built by ``training.optimizer.construct_optimizer`` from its yaml."""
    optimizer_module = pytest.importorskip("training.optimizer")
    import sam2
    from omegaconf import OmegaConf

    config_path = Path(sam2.__file__).parent / "configs/sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml"
    config = OmegaConf.load(config_path)
    if not OmegaConf.has_resolver("divide"):
        OmegaConf.register_new_resolver("divide", lambda x, y: x / y)
    optim = config.trainer.optim
    return optimizer_module.construct_optimizer(model, optim.optimizer, optim.options, optim.param_group_modifiers)


@pytest.fixture(scope="module")
def tiny_sam2() -> nn.Module:
    build_sam = pytest.importorskip("sam2.build_sam")
    return build_sam.build_sam2(
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        None,
        device="cpu",
        mode="train",
        hydra_overrides_extra=["++model.image_size=256"],
    )


def test_matches_the_official_mose_optimizer(tiny_sam2):
    official = official_optimizer(tiny_sam2).optimizer  # its schedules at step 0: the peak values
    expected = {id(p): (g["lr"], g["weight_decay"]) for g in official.param_groups for p in g["params"]}
    groups = sam2_param_groups(tiny_sam2, lr=5.0e-6, vision_lr=3.0e-6, weight_decay=0.1, layer_decay=0.9)
    ours = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert ours.keys() == expected.keys() == {id(p) for p in tiny_sam2.parameters()}
    names = {id(p): n for n, p in tiny_sam2.named_parameters()}
    mismatches = [
        (names[k], ours[k], expected[k])
        for k in ours
        if not (math.isclose(ours[k][0], expected[k][0], rel_tol=1e-9) and ours[k][1] == expected[k][1])
    ]
    assert mismatches == []
    # Sanity of the comparison itself: 12 trunk blocks give 12 + 1 distinct decayed rates, and decay is mixed.
    assert len({lr for lr, _ in ours.values()}) >= 14
    assert {wd for _, wd in ours.values()} == {0.0, 0.1}


def test_cosine_factor_matches_fvcore_and_warms_up():
    scheduler_module = pytest.importorskip("fvcore.common.param_scheduler")
    cosine = scheduler_module.CosineParamScheduler(start_value=5.0, end_value=0.5)
    for step in (0, 1, 37, 50, 99, 100):
        assert 5.0 * cosine_lr_factor(step, 100) == pytest.approx(cosine(step / 100))
    assert cosine_lr_factor(150, 100) == pytest.approx(0.1)
    # Warm-up over 10 steps, then the cosine over the remaining 90.
    assert [cosine_lr_factor(s, 100, 10) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert cosine_lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert cosine_lr_factor(55, 100, 10) == pytest.approx(0.55)
    assert cosine_lr_factor(100, 100, 10, min_lr_ratio=0.0) == pytest.approx(0.0)


def test_cosine_schedule_scales_every_group():
    groups = sam2_param_groups(ToySAM2(), lr=1.0, vision_lr=0.5)
    optimizer = torch.optim.AdamW(groups)
    peaks = [g["lr"] for g in optimizer.param_groups]
    scheduler = cosine_schedule(optimizer, total_steps=4)
    lrs = []
    for _ in range(4):
        optimizer.step()
        scheduler.step()
        lrs.append([g["lr"] / peak for g, peak in zip(optimizer.param_groups, peaks)])
    expected = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(1, 5)]
    for step_lrs, factor in zip(lrs, expected):
        assert step_lrs == pytest.approx([factor] * len(peaks))
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_schedule(optimizer, total_steps=4, warmup_steps=4)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        cosine_schedule(optimizer, total_steps=4, min_lr_ratio=2.0)


def test_cosine_over_run_spans_the_trainers_run_and_refuses_endless_runs():
    from samlab.models.sam2.optim import cosine_over_run

    class Run:
        estimated_stepping_batches = 10

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    config = cosine_over_run(optimizer, Run(), warmup_steps=50, min_lr_ratio=0.2)  # warm-up cut to 9 steps
    assert config["lr_scheduler"]["interval"] == "step" and config["optimizer"] is optimizer
    scheduler = config["lr_scheduler"]["scheduler"]
    factors = [scheduler.lr_lambdas[0](step) for step in range(11)]
    assert factors[0] == pytest.approx(1 / 9) and factors[8] == pytest.approx(1.0) and factors[10] == pytest.approx(0.2)
    Run.estimated_stepping_batches = float("inf")
    with pytest.raises(ValueError, match="finite run"):
        cosine_over_run(optimizer, Run())

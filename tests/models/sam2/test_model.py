"""Building SAM 2 models, checkpoint loading, freezing and LoRA (Hiera tiny at 64 px, CPU, random init)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch
from tests.models.sam2.tiny import SIZE, SMALL
from torch import nn

from samlab.errors import DataError
from samlab.models.sam2.model import (
    MODEL_PARTS,
    SAM21_ONLY_KEYS,
    add_lora,
    build_sam2_model,
    freeze,
    group_keys,
    load_checkpoint,
    read_state_dict,
)


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return build_sam2_model("sam2.1_hiera_t", image_size=SIZE, train=True, overrides=SMALL)


@pytest.fixture(scope="module")
def tiny20() -> nn.Module:
    return build_sam2_model("sam2_hiera_t", image_size=SIZE, train=False, overrides=SMALL)


def zeroed(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every parameter and buffer at zero (cheaper than building another model)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.zero_()
    return model


def test_build_applies_size_and_training_recipe() -> None:
    tiny = build_sam2_model("sam2.1_hiera_t", image_size=SIZE, train=True)
    assert tiny.image_encoder.trunk.blocks[0].dim == 96  # the package's Hiera tiny (no SMALL overrides)
    assert tiny.training and tiny.image_size == SIZE and tiny.sam_image_embedding_size == SIZE // 16
    # The settings of SAM 2's fine-tuning recipe.
    assert tiny.use_mask_input_as_output_without_sam and tiny.multimask_output_in_sam
    assert tiny.multimask_output_for_tracking and (tiny.multimask_min_pt_num, tiny.multimask_max_pt_num) == (0, 1)
    assert tiny.pred_obj_scores and tiny.num_maskmem == 7 and tiny.no_obj_embed_spatial is not None
    # Stochastic depth only in training: the deepest block drops paths at rate 0.1.
    assert tiny.image_encoder.trunk.blocks[-1].drop_path.drop_prob == pytest.approx(0.1)
    features = tiny.forward_image(torch.zeros(1, 3, SIZE, SIZE))["backbone_fpn"]
    assert [tuple(f.shape[-2:]) for f in features] == [(16, 16), (8, 8), (4, 4)]


def test_build_sam20_for_eval_with_overrides(tiny: nn.Module, tiny20: nn.Module) -> None:
    assert tiny20.image_encoder.trunk.blocks[0].dim == 32 and len(tiny20.memory_attention.layers) == 1
    assert not tiny20.training
    assert isinstance(tiny20.image_encoder.trunk.blocks[-1].drop_path, nn.Identity)
    assert not set(tiny20.state_dict()) & set(SAM21_ONLY_KEYS)
    assert set(SAM21_ONLY_KEYS) <= set(tiny.state_dict())


def test_build_rejects_unknown_variant_and_bad_size() -> None:
    with pytest.raises(ValueError, match="unknown SAM 2 variant"):
        build_sam2_model("sam3_hiera_t")
    with pytest.raises(ValueError, match="multiple of 32"):
        build_sam2_model("sam2.1_hiera_t", image_size=100)


@pytest.mark.parametrize("layout", ["official", "bare", "lightning"])
def test_checkpoint_round_trip(tiny: nn.Module, tmp_path: Path, layout: str) -> None:
    state = tiny.state_dict()
    data = {
        "official": {"model": state},
        "bare": state,
        "lightning": {"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3},
    }[layout]
    path = tmp_path / "ckpt.pt"
    torch.save(data, path)
    model = zeroed(tiny)
    report = load_checkpoint(model, path, strict=True)
    assert report.complete and report.missing == [] and report.unexpected == []
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_sam20_checkpoint_in_sam21_model_reports_new_keys(
    tiny: nn.Module, tiny20: nn.Module, tmp_path: Path, caplog
) -> None:
    path = tmp_path / "sam2.0.pt"
    torch.save({"model": {k: v for k, v in tiny.state_dict().items() if k not in SAM21_ONLY_KEYS}}, path)
    with caplog.at_level(logging.WARNING):
        report = load_checkpoint(zeroed(tiny), path)
    assert report.missing == sorted(SAM21_ONLY_KEYS) and report.unexpected == []
    assert "3 missing" in caplog.text and "SAM 2.1 added" in caplog.text
    with pytest.raises(DataError, match="missing"):
        load_checkpoint(zeroed(tiny), path, strict=True)

    report = load_checkpoint(zeroed(tiny20), tmp_path / "sam2.0.pt")
    assert report.complete
    torch.save({"model": tiny.state_dict()}, tmp_path / "sam2.1.pt")
    report = load_checkpoint(zeroed(tiny20), tmp_path / "sam2.1.pt")
    assert report.unexpected == sorted(SAM21_ONLY_KEYS) and "SAM 2.1-only" in report.summary()


def test_group_keys_counts_by_prefix() -> None:
    keys = ["image_encoder.trunk.a", "image_encoder.trunk.b", "image_encoder.neck.c", "no_mem_embed"]
    assert group_keys(keys) == {"image_encoder.neck": 1, "image_encoder.trunk": 2, "no_mem_embed": 1}


def test_bad_checkpoints_raise_data_error_naming_the_file(tiny20: nn.Module, tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(DataError, match="not a torch checkpoint") as err:
        read_state_dict(text)
    assert err.value.path == str(text)
    with pytest.raises(DataError, match="missing"):
        read_state_dict(tmp_path / "absent.pt")
    torch.save({"model": {"weight": "a string"}}, tmp_path / "strings.pt")
    with pytest.raises(DataError, match="not a state dict"):
        read_state_dict(tmp_path / "strings.pt")
    torch.save({"state_dict": {"net.weight": torch.zeros(1)}}, tmp_path / "other_module.ckpt")
    with pytest.raises(DataError, match=r"no 'model\.' parameters"):
        read_state_dict(tmp_path / "other_module.ckpt")
    torch.save({"classifier.weight": torch.zeros(2)}, tmp_path / "other_arch.pt")
    with pytest.raises(DataError, match="none of the checkpoint's 1 keys"):
        load_checkpoint(tiny20, tmp_path / "other_arch.pt")


def test_model_parts_cover_every_parameter_once(tiny: nn.Module) -> None:
    owners = {}
    for name, _ in tiny.named_parameters():
        top = name.split(".")[0]
        parts = [part for part, attributes in MODEL_PARTS.items() if top in attributes]
        owners[name] = parts
    assert all(len(parts) == 1 for parts in owners.values()), {n: p for n, p in owners.items() if len(p) != 1}


@pytest.mark.parametrize("part", list(MODEL_PARTS))
def test_freeze_stops_exactly_one_part(tiny20: nn.Module, part: str) -> None:
    model = copy.deepcopy(tiny20)
    total = sum(p.numel() for p in model.parameters())
    in_part = sum(p.numel() for n, p in model.named_parameters() if n.split(".")[0] in MODEL_PARTS[part])
    freeze(model, **{part: True})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for n, p in model.named_parameters() if n in trainable) == total - in_part
    assert all(n.split(".")[0] not in MODEL_PARTS[part] for n in trainable)


def test_add_lora_trains_only_adapters_in_the_encoder_and_keeps_outputs(tiny20: nn.Module, tmp_path: Path) -> None:
    model = copy.deepcopy(tiny20)
    image = torch.randn(1, 3, SIZE, SIZE)
    before = model.forward_image(image)["vision_features"]
    outside = {n for n, p in model.named_parameters() if not n.startswith("image_encoder.")}
    torch.save({"model": model.state_dict()}, tmp_path / "plain.pt")

    rank = 4
    add_lora(model, rank=rank, alpha=8)
    blocks = model.image_encoder.trunk.blocks
    # qkv: dim -> 3 dim_out, proj: dim_out -> dim_out; LoRA adds r * (in + out) to each.
    expected = sum(rank * (b.dim + 3 * b.dim_out) + rank * (2 * b.dim_out) for b in blocks)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    encoder = {n: p for n, p in trainable.items() if n.startswith("image_encoder.")}
    assert all("lora_" in n for n in encoder) and sum(p.numel() for p in encoder.values()) == expected
    assert set(trainable) - set(encoder) == outside
    assert not any("lora_" in n for n, _ in model.named_parameters() if ".attn." not in n)
    # LoRA's B matrices start at zero: the wrapped encoder computes the same features.
    assert torch.allclose(model.forward_image(image)["vision_features"], before, atol=1e-5)

    # A plain checkpoint fills the wrapped base layers; only the adapters are missing.
    report = load_checkpoint(model, tmp_path / "plain.pt")
    assert report.missing and all("lora_" in k for k in report.missing) and report.unexpected == []
    with pytest.raises(ValueError, match="LoRA targets"):
        add_lora(model, targets=("mlp",))


class Opaque:
    """A Python object that ``weights_only`` loading refuses."""


def test_checkpoint_with_python_objects_needs_weights_only_false(tiny: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "objects.pt"
    torch.save({"model": tiny.state_dict(), "config": Opaque()}, path)
    with pytest.raises(DataError, match="weights_only=False"):
        read_state_dict(path)
    assert set(read_state_dict(path, weights_only=False)) == set(tiny.state_dict())


@pytest.mark.parametrize(
    ("variant", "trunk_dim", "blocks"),
    [("sam2.1_hiera_s", 96, 16), ("sam2.1_hiera_b+", 112, 24), ("sam2.1_hiera_l", 144, 48), ("sam2_hiera_b+", 112, 24)],
)
def test_every_size_builds_at_a_custom_image_size(variant: str, trunk_dim: int, blocks: int) -> None:
    model = build_sam2_model(variant, image_size=96, train=False)
    trunk = model.image_encoder.trunk
    assert model.image_size == 96 and model.sam_image_embedding_size == 6
    assert trunk.patch_embed.proj.out_channels == trunk_dim and len(trunk.blocks) == blocks
    assert isinstance(model.obj_ptr_tpos_proj, nn.Linear) == variant.startswith("sam2.1")

"""Memory options of SAM 2 training (checkpointing, frozen encoder under no_grad, bf16 frozen weights) and the
memory account of `samlab bench memory` (tiny Hiera at 64 px, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tests.models.sam2.tiny import SIZE, SMALL

from samlab.cli import main
from samlab.errors import DataError
from samlab.losses import CORE_LOSS_KEY
from samlab.models.sam2.model import cast_frozen, checkpointed_modules
from samlab.models.sam2.module import SAM2VideoModule
from samlab.models.sam2.prompts import PromptConfig
from samlab.models.sam2.vos import forward_training
from samlab.tools.bench_memory import (
    ACCOUNT_PROMPTS,
    _row,
    _saved_bytes_of_step,
    count_saved_tensors,
    flash_attention,
    memory_account,
    recipe_settings,
    samlab_step,
    synthetic_batch,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def make_module(**kwargs) -> SAM2VideoModule:
    torch.manual_seed(0)
    return SAM2VideoModule(variant="sam2.1_hiera_t", image_size=SIZE, model_overrides=SMALL, **kwargs)


def step(module: SAM2VideoModule, batch, seed: int = 5) -> torch.Tensor:
    """A training step's loss with the plan and the noise (drop path, dropout, clicks) seeded."""
    torch.manual_seed(seed)
    forward = forward_training(module.model, batch, ACCOUNT_PROMPTS, plan_rng=np.random.default_rng(seed))
    return module.loss(forward.frames, batch.masks)[CORE_LOSS_KEY]


def test_activation_checkpointing_keeps_loss_and_gradients_and_saves_less() -> None:
    batch = synthetic_batch(3, 2, SIZE)
    results = {}
    for ckpt in (False, True):
        module = make_module(checkpoint_image_encoder=ckpt, checkpoint_memory=ckpt)  # drop path and dropout on
        with count_saved_tensors([*module.model.parameters(), *module.model.buffers()]) as saved:
            loss = step(module, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in module.model.named_parameters() if p.grad is not None}
        results[ckpt] = (loss.detach(), grads, saved.bytes)
    (loss, grads, plain_bytes), (ckpt_loss, ckpt_grads, ckpt_bytes) = results[False], results[True]
    torch.testing.assert_close(ckpt_loss, loss)
    assert ckpt_grads.keys() == grads.keys() and len(grads) > 100
    for name, grad in grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # Inside the checkpointed blocks nothing is kept (their inputs are kept by checkpointing, not counted here).
    assert ckpt_bytes < 0.7 * plain_bytes  # the rest: SAM heads and the loss at full resolution
    assert state_keys(make_module(checkpoint_image_encoder=True)) == state_keys(make_module())


def state_keys(module: SAM2VideoModule) -> list[str]:
    return list(module.model.state_dict())


def test_frozen_image_encoder_runs_without_grad_and_keeps_no_activation() -> None:
    images = torch.randn(2, 3, SIZE, SIZE)
    for frozen in (False, True):
        module = make_module(freeze_image_encoder=frozen)
        encoder = module.model.image_encoder
        with count_saved_tensors([*encoder.parameters(), *encoder.buffers()]) as saved:
            out = encoder(images)
        assert (saved.bytes == 0) == frozen
        assert out["vision_features"].requires_grad != frozen
        assert torch.is_grad_enabled()  # restored after the forward
    # The mask decoder's high-resolution convolutions applied to the frozen features still learn.
    module = make_module(freeze_image_encoder=True)
    step(module, synthetic_batch(2, 1, SIZE)).backward()
    assert module.model.sam_mask_decoder.conv_s0.weight.grad is not None
    assert all(p.grad is None for p in module.model.image_encoder.parameters())


def test_frozen_weights_in_bf16_halve_them_and_give_the_bf16_autocast_loss() -> None:
    batch = synthetic_batch(2, 1, SIZE)
    reference = make_module(freeze_image_encoder=True)
    halved = make_module(freeze_image_encoder=True, frozen_weights_bf16=True)
    frozen = [p for p in halved.model.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    assert all(p.dtype == torch.float32 for p in halved.model.parameters() if p.requires_grad)
    encoder_bytes = sum(p.numel() * 4 for p in reference.model.image_encoder.parameters())
    assert cast_frozen(reference.model) == encoder_bytes // 2  # what the option saves
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = step(make_module(freeze_image_encoder=True), batch)
        got = step(halved, batch)
    torch.testing.assert_close(got, expected, rtol=2e-2, atol=1e-3)
    halved._trainer = type("T", (), {"precision": "32-true"})()
    with pytest.raises(ValueError, match=r"frozen_weights_bf16 needs trainer\.precision 'bf16-mixed'"):
        halved.on_fit_start()


def test_flash_attention_accounting_gives_the_attention_and_its_gradients() -> None:
    q, k, v = (torch.randn(2, 1, 16, 8, requires_grad=True) for _ in range(3))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    (grads,) = [torch.autograd.grad(expected.sum(), (q, k, v))]
    with count_saved_tensors() as saved:
        out = flash_attention(q, k, v)
    torch.testing.assert_close(out, expected)
    for got, want in zip(torch.autograd.grad(out.sum(), (q, k, v)), grads):
        torch.testing.assert_close(got, want)
    # q, k, v, the output and a float32 log-sum-exp per query: no 16 x 16 attention matrix.
    assert saved.bytes == 4 * (2 * 16 * 8 * 4) + 2 * 16 * 4


def test_fake_step_accounts_the_bytes_of_the_real_step() -> None:
    module = make_module(checkpoint_memory=True)
    batch = synthetic_batch(3, 2, SIZE)
    run = samlab_step(module, ACCOUNT_PROMPTS, seed=0)
    checkpointed = checkpointed_modules(module.model, memory=True)
    fake = _saved_bytes_of_step(run, module.model, batch, checkpointed, bf16=False)
    real = _saved_bytes_of_step(run, module.model, batch, checkpointed, bf16=False, fake=False)
    # Within 2 %: fake tensors give some outputs their own storage where the real kernels return aliases.
    assert real > 0 and fake == pytest.approx(real, rel=0.02)


def test_row_extrapolates_per_frame() -> None:
    params = {"weights": 4e9, "gradients": 2e9, "optimizer": 4e9, "ddp_buckets": 2e9, "trainable_params": 5e8}
    row = _row("x", params, {3: 5e9, 4: 6.5e9, 8: 12.7e9}, reduced=3, frames=8)
    assert row["saved_per_frame"] == 1.5 and row["saved"] == 12.5 and row["saved_direct"] == 12.7
    assert row["peak"] == 24.5 and row["trainable_params_m"] == 500


def test_account_of_option_sets_and_of_the_official_step() -> None:
    pytest.importorskip("training.model.sam2")
    sets = {"recipe": {}, "ckpt_all": {"checkpoint_image_encoder": True, "checkpoint_memory": True}}
    light = PromptConfig(**(vars(ACCOUNT_PROMPTS) | {"num_correction_pt_per_frame": 1}))
    kwargs = {"variant": "sam2.1_hiera_t", "model_overrides": SMALL}
    rows = memory_account(kwargs, SIZE, 4, 2, sets, reduced_frames=2, prompts=light)
    recipe, ckpt = rows
    assert recipe["option_set"] == "recipe" and recipe["trainable_params_m"] > 9
    assert ckpt["saved"] < recipe["saved"] and ckpt["weights"] == recipe["weights"]
    # The official step on the same inputs keeps what samlab's keeps; it has no checkpointing option.
    assert recipe["official_saved"] == pytest.approx(recipe["saved"], rel=0.02)
    assert "official_saved" not in ckpt
    assert recipe["saved_direct"] == pytest.approx(recipe["saved"], rel=0.1)


def test_bench_memory_reads_the_recipe_and_names_bad_files(tmp_path: Path, capsys) -> None:
    settings = recipe_settings(CONFIGS / "sam2_mose.yaml")
    assert (settings["image_size"], settings["num_frames"], settings["num_objects"]) == (1024, 8, 3)
    assert settings["bf16"] and settings["ddp"] and settings["module_kwargs"]["variant"] == "sam2.1_hiera_b+"
    with pytest.raises(DataError, match="expected a SAM2VideoModule recipe"):
        recipe_settings(CONFIGS / "masa_sa1b.yaml")
    tiny = tmp_path / "tiny.yaml"
    recipe = yaml.safe_load((CONFIGS / "sam2_mose.yaml").read_text())
    recipe["model"]["init_args"] |= {"variant": "sam2.1_hiera_t", "model_overrides": SMALL}
    recipe["data"]["init_args"] |= {"image_size": SIZE, "num_frames": 3, "max_num_objects": 1}
    tiny.write_text(yaml.safe_dump(recipe))
    argv = ["bench", "memory", "--config", str(tiny), "--option-sets", "frozen_encoder", "--reduced-frames", "2"]
    assert main([*argv, "--no-official", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (row,) = result["rows"]
    assert result["num_frames"] == 3 and row["option_set"] == "frozen_encoder" and row["peak"] > row["saved"]
    with pytest.raises(ValueError, match="unknown option sets"):
        main(["bench", "memory", "--config", str(tiny), "--option-sets", "tiny_gpu"])

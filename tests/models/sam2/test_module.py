"""``SAM2VideoModule``: training step, gradients, Trainer fit / validate / predict on tiny clips (CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn
from torch.utils.data import DataLoader

from samlab.data.batch import VideoBatch, collate_clips
from samlab.data.sampling import Clip
from samlab.losses import LOSS_KEYS
from samlab.models.sam2.model import load_checkpoint
from samlab.models.sam2.module import SAM2VideoModule
from samlab.models.sam2.prompts import PromptConfig
from samlab.models.sam2.vos import VideoPrediction
from samlab.models.sam2.writers import VOSMaskWriter

SIZE = 64
SMALL = [
    "++model.image_encoder.trunk.embed_dim=32",
    "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.dim_feedforward=256",
]
CLICKS = PromptConfig(
    prob_to_use_pt_input_for_train=1.0,
    prob_to_use_box_input_for_train=0.0,
    num_init_cond_frames_for_train=1,
    num_frames_to_correct_for_train=1,
    num_correction_pt_per_frame=1,
)


def make_batch(name: str, num_frames: int = 3, num_objects: int = 2, seed: int = 0) -> VideoBatch:
    generator = np.random.default_rng(seed)
    masks = np.zeros((num_frames, num_objects, SIZE, SIZE), dtype=bool)
    for o in range(num_objects):
        masks[:, o, 4 + 28 * o : 24 + 28 * o, 8 + 2 * o : 40] = True
    frames = [torch.from_numpy(generator.standard_normal((3, SIZE, SIZE), dtype=np.float32)) for _ in masks]
    clip = Clip(name, frames, masks, list(range(1, num_objects + 1)), list(range(num_frames)), (32, 48))
    return collate_clips([clip], num_skipped=1)


def make_module(**kwargs) -> SAM2VideoModule:
    torch.manual_seed(0)
    return SAM2VideoModule(variant="sam2.1_hiera_t", image_size=SIZE, model_overrides=SMALL, **kwargs)


pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def test_training_step_gives_gradients_to_trainable_parameters_only() -> None:
    module = make_module(freeze_image_encoder=True, freeze_prompt_encoder=True, prompts=CLICKS)
    loss = module.training_step(make_batch("a"), 0)
    assert loss is not None and torch.isfinite(loss) and loss > 0
    loss.backward()
    params = dict(module.model.named_parameters())
    assert all(p.grad is None for n, p in params.items() if n.startswith(("image_encoder.", "sam_prompt_encoder.")))
    decoder_grads = [p.grad for n, p in params.items() if n.startswith("sam_mask_decoder.") and p.grad is not None]
    assert decoder_grads and any(g.abs().sum() > 0 for g in decoder_grads)
    assert params["memory_attention.layers.0.linear1.weight"].grad is not None  # tracked frames use the memory
    assert all(not p.requires_grad for n, p in params.items() if n.startswith("image_encoder."))


def test_lora_module_trains_adapters_and_optimises_only_trainable_parameters() -> None:
    module = make_module(lora_rank=2, freeze_memory=True, prompts=CLICKS)
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("image_encoder.")} == {
        n for n, _ in module.model.named_parameters() if "lora_" in n
    }
    assert not any(n.startswith(("memory_attention.", "memory_encoder.")) for n in trainable)
    loss = module.training_step(make_batch("a"), 0)
    loss.backward()
    lora_grads = [p.grad for n, p in module.model.named_parameters() if "lora_B" in n]
    assert all(g is not None for g in lora_grads) and any(g.abs().sum() > 0 for g in lora_grads)


def test_non_finite_loss_stops_training() -> None:
    class NaNLoss(nn.Module):
        def forward(self, outputs, targets):
            nan = torch.tensor(float("nan"), requires_grad=True)
            return {**dict.fromkeys(LOSS_KEYS, nan), "core_loss": nan}

    module = make_module(freeze_image_encoder=True, prompts=CLICKS)
    module.loss = NaNLoss()
    with pytest.raises(FloatingPointError, match=r"non-finite training loss .*\['a'\]"):
        module.training_step(make_batch("a"), 0)


def test_mask_prompts_on_every_frame_skip_the_step() -> None:
    prompts = PromptConfig(
        prob_to_use_pt_input_for_train=0.0,
        num_init_cond_frames_for_train=2,
        num_frames_to_correct_for_train=2,
        rand_init_cond_frames_for_train=False,
    )
    module = make_module(freeze_image_encoder=True, prompts=prompts)
    with pytest.warns(UserWarning, match="nothing to learn"):
        assert module.training_step(make_batch("a", num_frames=2), 0) is None


def trainer(tmp_path: Path, **kwargs) -> Trainer:
    return Trainer(
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def loader(batches: list[VideoBatch]) -> DataLoader:
    return DataLoader(batches, batch_size=None, collate_fn=lambda batch: batch)


def test_fit_validates_with_j_and_f_and_follows_the_cosine_schedule(tmp_path: Path) -> None:
    module = make_module(freeze_image_encoder=True, prompts=CLICKS, lr=1e-4, vision_lr=1e-5, min_lr_ratio=0.1)
    run = trainer(tmp_path, max_steps=2, gradient_clip_val=0.1)
    train = loader([make_batch("a", num_frames=2, seed=0), make_batch("b", num_frames=2, seed=1)])
    val = loader([make_batch("v", num_frames=2, seed=2)])
    run.fit(module, train, val)
    metrics = run.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and metrics["data/skipped"] == 2
    assert 0 <= metrics["val/J&F"] <= 100 and metrics["val/J&F"] == pytest.approx(
        (metrics["val/J"] + metrics["val/F"]) / 2
    )
    # 2 of 2 steps done: every group at min_lr_ratio of its peak, frozen parameters not in the optimiser.
    optimizer = run.optimizers[0]
    assert all(g["lr"] == pytest.approx(0.1 * g["initial_lr"]) for g in optimizer.param_groups)
    assert max(g["initial_lr"] for g in optimizer.param_groups) == pytest.approx(1e-4)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in in_optimizer for p in module.model.image_encoder.parameters())

    # The checkpoint holds only tensors and plain values: readable with weights_only=True, by Lightning and by
    # load_checkpoint (the "model." prefix removed).
    path = tmp_path / "run.ckpt"
    run.save_checkpoint(path)
    restored = SAM2VideoModule.load_from_checkpoint(path, weights_only=True)
    assert restored.prompts == CLICKS and restored.hparams.lr == 1e-4
    assert torch.equal(restored.model.no_mem_embed, module.model.no_mem_embed)
    assert load_checkpoint(make_module().model, path, strict=True).complete


def test_validate_prompt_frame_is_perfect_and_predict_writes_masks(tmp_path: Path) -> None:
    module = make_module()
    run = trainer(tmp_path)
    # One frame: the only frame is the prompt frame, given as output, so J = F = 100.
    (scores,) = run.validate(module, loader([make_batch("v", num_frames=1)]), verbose=False)
    assert scores["val/J&F"] == pytest.approx(100.0)
    module.train()
    two_frames = [make_batch("v", num_frames=2)]
    direct = module.vos_scores(two_frames)
    assert module.training and module.model.training  # restored after the pass
    (scores,) = run.validate(module, loader(two_frames), verbose=False)
    assert direct["J&F"] == pytest.approx(scores["val/J&F"]) and direct["J"] == pytest.approx(scores["val/J"])

    writer = VOSMaskWriter(tmp_path / "out", layout="davis")
    run = trainer(tmp_path, callbacks=[writer])
    (prediction,) = run.predict(module, loader([make_batch("cat", num_frames=2)]))
    assert isinstance(prediction, VideoPrediction) and prediction.masks.shape == (2, 2, 32, 48)
    assert sorted(p.name for p in (tmp_path / "out" / "cat").iterdir()) == ["00000.png", "00001.png"]

"""``SAM2VideoModule``: training step, gradients, Trainer fit / validate / predict on tiny clips (CPU)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, Trainer
from tests.models.sam2.tiny import CLICKS, SIZE, SMALL, loader, make_batch, make_module
from torch import nn
from torch.utils.data import DataLoader

from samlab.data.batch import VideoBatch, collate_clips
from samlab.data.sampling import Clip
from samlab.losses import LOSS_KEYS
from samlab.models.sam2 import vos
from samlab.models.sam2.model import build_sam2_model, load_checkpoint
from samlab.models.sam2.module import SAM2VideoModule
from samlab.models.sam2.prompts import PromptConfig, plan_prompts
from samlab.models.sam2.vos import VideoPrediction
from samlab.models.sam2.writers import VOSMaskWriter

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


# Train mode without randomness in the model (no drop path, no dropout): the only random draws are the plan's
# (NumPy, both sides the same seed) and the box noise and clicks (torch global generator, both sides the same seed).
NO_DROPOUT = [
    "++model.memory_attention.layer.dropout=0.0",
    "++model.memory_attention.layer.self_attention.dropout=0.0",
    "++model.memory_attention.layer.cross_attention.dropout=0.0",
]
# Two initial conditioning frames (a box on one, a click on the other with plan seed 4), one more corrected frame,
# three correction clicks per corrected frame, half of them sampled from the GT.
PARITY_PROMPTS = PromptConfig(
    prob_to_use_pt_input_for_train=1.0,
    prob_to_use_box_input_for_train=0.5,
    num_init_cond_frames_for_train=2,
    rand_init_cond_frames_for_train=False,
    num_frames_to_correct_for_train=3,
    rand_frames_to_correct_for_train=False,
    num_correction_pt_per_frame=3,
    prob_to_sample_from_gt_for_train=0.5,
    add_all_frames_to_correct_as_cond=True,
)


def two_clip_batch(num_frames: int = 4) -> VideoBatch:
    """B = 2 clips (2 and 1 objects, visible on every frame, moving) of random frames."""
    generator = np.random.default_rng(4)
    clips = []
    for b, count in enumerate((2, 1)):
        masks = np.zeros((num_frames, count, SIZE, SIZE), dtype=bool)
        for t in range(num_frames):
            for o in range(count):
                top, left = 6 + 26 * o + 2 * t, 8 + 10 * b + 3 * t
                masks[t, o, top : top + 18, left : left + 22 - 4 * o] = True
        frames = [torch.from_numpy(generator.standard_normal((3, SIZE, SIZE), dtype=np.float32)) for _ in masks]
        clips.append(Clip(f"v{b}", frames, masks, list(range(1, count + 1)), list(range(num_frames)), (SIZE, SIZE)))
    return collate_clips(clips)


def test_batch_of_two_clips_gives_the_official_loss_and_gradients(monkeypatch) -> None:
    """B = 2 in train mode: the loss and every gradient of SAM2Train + MultiStepMultiMasksAndIous on the same plan."""
    pytest.importorskip("training.model.sam2")
    loss_fns = pytest.importorskip("training.loss_fns")
    from training.utils.data_utils import BatchedVideoDatapoint, BatchedVideoMetaData

    module = make_module(drop_path_rate=0.0, model_overrides=[*SMALL, *NO_DROPOUT], prompts=PARITY_PROMPTS)
    module.plan_rng = np.random.default_rng(4)
    upstream_prompts = {k: v for k, v in vars(PARITY_PROMPTS).items() if k != "pt_sampling_for_eval"}
    oracle = build_sam2_model(
        "sam2.1_hiera_t",
        image_size=SIZE,
        train=True,
        drop_path_rate=0.0,
        overrides=(
            *SMALL,
            *NO_DROPOUT,
            "++model._target_=training.model.sam2.SAM2Train",
            *(f"++model.{k}={v}" for k, v in upstream_prompts.items()),
        ),
    )
    oracle.load_state_dict(module.model.state_dict())
    oracle.rng = np.random.default_rng(4)
    official_loss = loss_fns.MultiStepMultiMasksAndIous(
        weight_dict={"loss_mask": 20, "loss_dice": 1, "loss_iou": 1, "loss_class": 1},
        supervise_all_iou=True,
        iou_use_l1_loss=True,
        pred_obj_scores=True,
        focal_gamma_obj_score=0.0,
        focal_alpha_obj_score=-1.0,
    )
    batch = two_clip_batch()
    datapoint = BatchedVideoDatapoint(
        img_batch=batch.images,
        obj_to_frame_idx=batch.obj_to_frame_idx,
        masks=batch.masks,
        metadata=BatchedVideoMetaData(
            unique_objects_identifier=torch.zeros(4, 3, 3, dtype=torch.long), frame_orig_size=torch.zeros(4, 3, 2)
        ),
        dict_key="test",
        batch_size=[4],
    )
    from_gt = []  # correction clicks drawn from the GT (pred None) by samlab, to check the plan exercises them
    sample = vos.sample_error_click

    def recording(gt, pred, *args, **kwargs):
        from_gt.append(pred is None)
        return sample(gt, pred, *args, **kwargs)

    monkeypatch.setattr(vos, "sample_error_click", recording)
    torch.manual_seed(11)
    ours = module.training_step(batch, 0)
    ours.backward()
    torch.manual_seed(11)
    theirs = official_loss(oracle(datapoint), batch.masks)["core_loss"]
    theirs.backward()

    plan = plan_prompts(4, PARITY_PROMPTS, np.random.default_rng(4))
    assert plan.init_cond_frames == [0, 3] and plan.box_frames == [3] and plan.frames_to_add_correction_pt == [0, 3, 2]
    # The click on frame 0, then 3 x 3 correction clicks of which 4 from the GT.
    assert len(from_gt) == 10 and from_gt[0] and sum(from_gt[1:]) == 4
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    official = dict(oracle.named_parameters())
    compared = 0
    for name, param in module.model.named_parameters():
        if param.grad is None:
            assert official[name].grad is None, name
            continue
        torch.testing.assert_close(param.grad, official[name].grad, rtol=1e-4, atol=1e-7, msg=name)
        compared += param.grad.abs().sum() > 0
    assert compared > 100


def identity(item):
    return item


class RecordRandomState(Callback):
    """Writes, per rank, the plan the module would draw next and the next draws of the global torch generator."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_fit_start(self, trainer, pl_module) -> None:
        self.seeded = self.next_draws()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        plan = plan_prompts(batch.num_frames, pl_module.prompts, copy.deepcopy(pl_module.plan_rng))
        record = {"plan": vars(plan), "noise": self.next_draws(), "seeded": self.seeded}
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))

    @staticmethod
    def next_draws() -> list[float]:
        return torch.rand(4, generator=torch.Generator().set_state(torch.random.get_rng_state())).tolist()


@pytest.mark.slow  # two spawned processes: ~20 s of CPU, mostly start-up
def test_ddp_ranks_share_the_prompt_plan_but_not_the_noise(tmp_path: Path, monkeypatch) -> None:
    """Two CPU ranks: the same plan on both (its own generator), different dropout / drop path / click noise."""
    monkeypatch.setenv("PL_GLOBAL_SEED", "123")
    module = make_module(freeze_image_encoder=True, prompts=PromptConfig(prob_to_use_pt_input_for_train=1.0))
    run = trainer(
        tmp_path,
        devices=2,
        strategy="ddp_spawn",
        max_steps=1,
        callbacks=[RecordRandomState(tmp_path)],
    )
    batches = [make_batch("a", num_frames=3, seed=0), make_batch("b", num_frames=3, seed=1)]
    run.fit(module, DataLoader(batches, batch_size=None, collate_fn=identity))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["plan"] == ranks[1]["plan"]
    assert ranks[0]["noise"] != ranks[1]["noise"]
    # Rank r draws from seed 123 + r, as upstream's set_seeds (seed + rank).
    for rank, record in enumerate(ranks):
        assert record["seeded"] == torch.rand(4, generator=torch.Generator().manual_seed(123 + rank)).tolist()

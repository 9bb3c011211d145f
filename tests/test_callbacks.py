"""samlab callbacks: validation images to TensorBoard and W&B, gradient norms, config logged to loggers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tests.models.sam2.tiny import CLICKS, SMALL, loader, make_batch

from samlab.callbacks import GradNormMonitor, ValidationImages
from samlab.models.sam2.module import SAM2VideoModule

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def _fit(tmp_path: Path, loggers: list) -> tuple[Trainer, SAM2VideoModule]:
    torch.manual_seed(0)
    module = SAM2VideoModule(variant="sam2.1_hiera_t", image_size=64, model_overrides=SMALL, prompts=CLICKS)
    trainer = Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=loggers,
        callbacks=[ValidationImages(num_batches=1), GradNormMonitor()],
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    train = loader([make_batch("a", num_frames=2, seed=0), make_batch("b", num_frames=2, seed=1)])
    trainer.fit(module, train, loader([make_batch("v", num_frames=3, seed=2), make_batch("w", num_frames=2)]))
    return trainer, module


def test_validation_images_and_grad_norms_reach_tensorboard_and_csv(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tensorboard = TensorBoardLogger(tmp_path / "tb", name="")
    trainer, _ = _fit(tmp_path, [tensorboard, CSVLogger(tmp_path / "csv", name="")])
    events = EventAccumulator(tensorboard.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["val_samples/0_0"]  # only the first validation batch (num_batches=1)
    image = events.Images("val_samples/0_0")[0]
    assert (image.height, image.width) == (2 * 64, 3 * 64 + 2 * 2)  # GT over prediction, 3 frames, 2-px gaps

    rows = list(csv.DictReader((Path(trainer.loggers[1].log_dir) / "metrics.csv").read_text().splitlines()))
    logged = [float(r["grad_norm/total"]) for r in rows if r.get("grad_norm/total")]
    assert len(logged) == 2 and all(np.isfinite(logged)) and all(v > 0 for v in logged)
    parts = [k for k in rows[0] if k.startswith("grad_norm/model.")]
    assert "grad_norm/model.sam_mask_decoder" in parts and "grad_norm/model.image_encoder" in parts


def test_grad_norm_total_is_the_norm_of_all_gradients():
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    module(torch.ones(4, 3)).sum().backward()
    logged = {}
    module.log_dict = lambda values, **kwargs: logged.update(values)

    class FakeTrainer:
        global_step = 0
        log_every_n_steps = 1

    GradNormMonitor().on_before_optimizer_step(FakeTrainer(), module, None)
    everything = torch.cat([p.grad.flatten() for p in module.parameters()])
    assert float(logged["grad_norm/total"]) == pytest.approx(float(everything.norm()))
    assert float(logged["grad_norm/0.weight"]) == pytest.approx(float(module[0].weight.grad.norm()))


def test_validation_images_strip_shows_ground_truth_and_prediction():
    module = SAM2VideoModule(variant="sam2.1_hiera_t", image_size=64, model_overrides=SMALL)
    batch = make_batch("v", num_frames=2)
    pred = torch.zeros_like(batch.masks)
    [(caption, image)] = module.validation_images(batch, {"masks": pred})
    assert "v" in caption and image.shape == (128, 130, 3) and image.dtype == np.uint8
    top, bottom = image[:64, :64].astype(int), image[64:, :64].astype(int)
    inside = batch.masks[0, 0].numpy()
    inside[:, :1] = inside[:1] = False
    # ground-truth object 0 is tinted in the top row; the empty prediction leaves the bottom row untinted
    assert np.abs(top[inside] - bottom[inside]).mean() > 20


def test_validation_images_reach_wandb_offline(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    _fit(tmp_path, [WandbLogger(project="samlab-test", save_dir=str(tmp_path), offline=True)])
    import wandb

    wandb.finish()
    [run] = list((tmp_path / "wandb").glob("offline-run-*"))
    images = list((run / "files" / "media" / "images").rglob("*.png"))
    assert len(images) == 1 and images[0].parent.name == "val_samples"


def test_progress_bar_epoch_description_without_max_epochs_and_plain_choice(monkeypatch):
    from types import SimpleNamespace

    from samlab.callbacks import ProgressBar

    bar = ProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=-1)  # a run bounded by max_steps only
    assert bar._get_train_description(20).strip() == "Epoch 20"  # Lightning's own bar says "Epoch 20/-2"
    bar._trainer = SimpleNamespace(max_epochs=40)
    assert bar._get_train_description(20).strip() == "Epoch 20/39"
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert bar._plain() and not ProgressBar(plain=False)._plain()
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert not bar._plain() and ProgressBar(plain=True)._plain()
    with pytest.raises(ValueError, match="every_n_steps"):
        ProgressBar(every_n_steps=0)

"""DirectSAMModule: the loss (transformers' own), validation metrics (evaluate.py's definition), prediction at the
model resolution, inference, optimiser and schedule (transformers' constant_with_warmup)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from transformers import get_constant_schedule_with_warmup

from samlab.data.boundaries import BoundaryDataModule
from samlab.models.directsam.module import DirectSAMModule
from samlab.models.directsam.writers import done_names


def test_validation_defaults_are_evaluate_py_s(tiny_model):
    module = DirectSAMModule(image_size=64, **tiny_model)
    assert module.val_metric.tolerance == 5 and module.val_metric.thresholds == (0.1, 0.2, 0.3, 0.4, 0.5)
    data = BoundaryDataModule(image_size=1800)
    assert (data.thickness, data.val_thickness, data.flip_prob, data.augment_prob) == (3, 2, 0.0, 0.25)


def test_loss_equals_the_segformer_s_own_loss(tiny_model):
    module = DirectSAMModule(image_size=64, **tiny_model).eval()  # no dropout: both passes see the same logits
    images = torch.randn(2, 3, 64, 64)
    targets = (torch.rand(2, 64, 64) > 0.7).float()
    expected = module.model(pixel_values=images, labels=targets).loss  # what DirectSAM's train.py optimises
    torch.testing.assert_close(module.loss(module(images), targets), expected)


def test_loss_is_bce_on_bilinearly_upsampled_logits(tiny_model):
    module = DirectSAMModule(image_size=64, **tiny_model)
    logits = torch.randn(2, 1, 16, 16)
    targets = (torch.rand(2, 64, 64) > 0.7).float()
    upsampled = F.interpolate(logits, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    expected = F.binary_cross_entropy_with_logits(upsampled, targets)
    torch.testing.assert_close(module.loss(logits, targets), expected)


def test_fit_logs_contour_metrics_and_predict_returns_the_model_resolution(tmp_path, tiny_model, sa1b_root):
    roots = {"root": str(sa1b_root), "val_root": str(sa1b_root), "predict_root": str(sa1b_root)}
    data = BoundaryDataModule(image_size=64, batch_size=2, **roots)
    module = DirectSAMModule(image_size=64, thresholds=(0.3, 0.5), tolerance=3, **tiny_model)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, datamodule=data)
    metrics = trainer.callback_metrics
    for key in ("val/loss", "val/contour_recall@0.5", "val/num_tokens@0.3", "val/precision@0.5", "val/f@0.5"):
        assert key in metrics and torch.isfinite(metrics[key])
    assert 0 <= metrics["val/contour_recall@0.5"] <= 1 and metrics["val/num_images"] == 2
    predictions = trainer.predict(module, datamodule=data)
    first = predictions[0][0]
    assert first.shape == (64, 64) and first.min() >= 0 and first.max() <= 1
    batch = data.on_after_batch_transfer(next(iter(data.predict_dataloader())), 0)
    module.eval()
    with torch.no_grad():
        logits = module(batch.images)
    expected = F.interpolate(logits, size=(64, 64), mode="bicubic", align_corners=False).sigmoid()[:, 0]
    torch.testing.assert_close(torch.stack(module.predict_step(batch, 0)), expected)


def test_predict_probabilities_of_any_size_and_dtype(tiny_model):
    module = DirectSAMModule(image_size=64, **tiny_model)
    module.train()
    out = module.predict_probabilities(torch.randint(0, 255, (3, 100, 130), dtype=torch.uint8))
    assert out.shape == (100, 130) and out.min() >= 0 and out.max() <= 1
    assert module.training  # restored


def test_adamw_and_constant_with_warmup_as_transformers(tiny_model):
    module = DirectSAMModule(image_size=64, **(tiny_model | {"warmup_steps": 4, "lr": 1.0}))
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.AdamW) and config["lr_scheduler"]["interval"] == "step"
    group = optimizer.param_groups[0]
    assert (group["weight_decay"], group["betas"], group["eps"]) == (0.0, (0.9, 0.999), 1e-8)  # TrainingArguments'
    reference = get_constant_schedule_with_warmup(torch.optim.AdamW([torch.zeros(1)], lr=1.0), 4)
    rates, expected = [], []
    for _ in range(7):
        rates.append(scheduler.get_last_lr()[0])
        expected.append(reference.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
        reference.optimizer.step()
        reference.step()
    assert rates == pytest.approx(expected) and rates[:5] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


def test_done_names(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "v" / "00003.json").write_text("{}")
    (tmp_path / "b.json.tmp12").write_text("{")
    assert done_names(tmp_path) == {"a", "v/00003"}
    assert done_names(tmp_path / "missing") == set()


def test_validation_images_show_image_target_and_probability(tiny_model, sa1b_root):
    data = BoundaryDataModule(image_size=64, root=str(sa1b_root), val_root=str(sa1b_root))
    data.setup("validate")
    batch = data.on_after_batch_transfer(next(iter(data.val_dataloader())), 0)
    module = DirectSAMModule(image_size=64, **tiny_model)
    probabilities = torch.zeros(len(batch.names), 64, 64)
    probabilities[:, 10:20, 10:20] = 1.0
    [(caption, strip), *_] = module.validation_images(batch, {"probabilities": probabilities})
    assert batch.names[0] in caption and strip.shape == (64, 3 * 64 + 2 * 2, 3)
    target_panel, probability_panel = strip[:, 66:130], strip[:, 132:]
    assert (target_panel[batch.targets[0].numpy() > 0.5] == 255).all()
    assert (probability_panel[10:20, 10:20] == 255).all() and (probability_panel[30:] == 0).all()

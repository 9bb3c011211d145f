"""Every MASA config runs: ``samlab fit`` with tiny overrides (tiny SAM ViT, 64 px, synthetic COCO / SA-1B data).

Configs run here: ``masa_sa1b.yaml``, ``masa_sa1b_1gpu.yaml``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import yaml

from samlab.cli import main

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
MASA_CONFIGS = ["masa_sa1b.yaml", "masa_sa1b_1gpu.yaml"]
TINY_SAM = {"embed_dim": 32, "depth": 4, "num_heads": 2, "global_attn_indexes": [0, 1, 2, 3], "window_size": 2}
TINY_MODEL = {
    "checkpoint": None,
    "backbone_options": {"variant": "vit_b", "overrides": TINY_SAM},
    "channels": 32,
    "fusion_blocks": 1,
    "anchor_scale": 2.0,
    "fc_channels": 128,
    "roi_samples": 64,
}
TINY_TRAINER = {
    "accelerator": "cpu",
    "devices": 1,
    "strategy": "auto",
    "max_epochs": 1,
    "limit_train_batches": 1,
    "limit_val_batches": 1,
    "check_val_every_n_epoch": 1,
    "num_sanity_val_steps": 0,
    "log_every_n_steps": 1,
}


@pytest.mark.parametrize("config", MASA_CONFIGS)
def test_shipped_config_runs(config, tmp_path, coco_root, sa1b_root):
    data = {
        "image_size": 64,
        "batch_size": 2,
        "val_batch_size": 2,
        "num_workers": 0,
        "max_instances": 8,
        "samples_per_epoch": 4,
    }
    if config == "masa_sa1b.yaml":  # COCO files, as `samlab data sa1b-to-coco` writes them
        ann = str(coco_root / "annotations" / "instances.json")
        images = str(coco_root / "images")
        data |= {"ann_file": ann, "image_root": images, "val_ann_file": ann, "val_image_root": images}
    else:  # an SA-1B folder read directly
        data |= {"ann_file": None, "val_ann_file": None, "sa1b_root": str(sa1b_root), "val_sa1b_root": str(sa1b_root)}
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path), "name": ""}}
    override = {
        "trainer": TINY_TRAINER | {"default_root_dir": str(tmp_path / "run"), "callbacks": [], "logger": [logger]},
        "model": {"init_args": TINY_MODEL},
        "data": {"init_args": data},
    }
    override_file = tmp_path / "tiny.yaml"
    override_file.write_text(yaml.safe_dump(override))
    main(["fit", "--config", str(CONFIGS / config), "--config", str(override_file)])
    with open(next(tmp_path.rglob("metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    accuracies = [float(r["val/match_acc"]) for r in rows if r.get("val/match_acc")]
    assert len(losses) == 1 and math.isfinite(losses[0]) and losses[0] > 0
    assert len(accuracies) == 1 and 0.0 <= accuracies[0] <= 1.0


def test_recipe_values():
    """MASA's recipe (masa_gdino_swinb_train.py + masa_dataset.py, masa-sam's adapter) and its one-GPU scaling (lr
    and warm-up scaled linearly from the reference's 64 images per step)."""
    full = yaml.safe_load((CONFIGS / "masa_sa1b.yaml").read_text())
    one = yaml.safe_load((CONFIGS / "masa_sa1b_1gpu.yaml").read_text())
    model, data, trainer = full["model"]["init_args"], full["data"]["init_args"], full["trainer"]
    assert (model["lr"], model["momentum"], model["weight_decay"]) == (0.08, 0.9, 1.0e-4)
    assert (model["warmup_iters"], model["warmup_ratio"], model["milestones"], trainer["max_epochs"]) == (
        1000,
        0.001,
        [8, 11],
        12,
    )
    assert trainer["gradient_clip_val"] == 35.0 and trainer["gradient_clip_algorithm"] == "norm"
    assert (model["fusion"], model["fusion_blocks"], model["roi_levels"], model["backbone"]) == ("dyhead", 3, 4, "sam")
    assert data["image_size"] == 1024 and data["samples_per_epoch"] == 200000 and "max_instances" not in data
    images = trainer["devices"] * data["batch_size"]
    assert images == 64
    one_model, one_data = one["model"]["init_args"], one["data"]["init_args"]
    one_images = one["trainer"]["devices"] * one_data["batch_size"]
    assert one_model["lr"] == pytest.approx(0.08 * one_images / images)
    assert one_model["warmup_iters"] == 1000 * images // one_images
    assert one_data["samples_per_epoch"] == 200000 and one_model["milestones"] == [8, 11]
    assert (one_model["fusion"], one_model["roi_levels"]) == ("dyhead", 4)
    # The augmentation block of the recipe is the reference's pipeline (= PairAugment's defaults).
    from dataclasses import asdict

    from samlab.data.pairs import PairAugment

    written = {k: tuple(v) if isinstance(v, list) else v for k, v in data["augment"].items()}
    assert written == asdict(PairAugment())

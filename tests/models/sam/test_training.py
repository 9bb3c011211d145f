"""Proof: a short CPU fine-tune of a tiny, randomly initialised SAM raises segm AP on held-out synthetic images.

Deterministic on any machine: one torch thread (the SAM tests' conftest), every generator seeded, deterministic
algorithms. Seeds beyond 0 (data and weights): ``SAMLAB_SAM_PROOF_SEEDS=0,1,2,3,4 pytest -m slow
tests/models/sam/test_training.py -s``; their figures are in docs/benchmarks.md ("Training proofs across seeds").
"""

from __future__ import annotations

import os

import lightning as L
import pytest
import torch

from samlab.data.datamodules import COCODataModule
from samlab.data.instance_transforms import LargeScaleJitterTransform, ResizeLongestSideTransform
from samlab.data.synth import synthesize
from samlab.models.sam.model import EncoderSize
from samlab.models.sam.module import SAMPromptModule
from samlab.models.sam.prompts import PromptConfig

SIZE = 128
SEEDS = [int(s) for s in os.environ.get("SAMLAB_SAM_PROOF_SEEDS", "0").split(",")]


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_box_fine_tune_raises_heldout_segm_ap(seed, tmp_path, deterministic_torch):
    assert torch.get_num_threads() == 1
    synthesize("coco", tmp_path / "train", videos=32, size=(96, 128), seed=10 + 2 * seed, objects=2)
    synthesize("coco", tmp_path / "val", videos=8, size=(96, 128), seed=11 + 2 * seed, objects=2)
    data = COCODataModule(
        ann_file=str(tmp_path / "train" / "annotations" / "instances.json"),
        image_root=str(tmp_path / "train" / "images"),
        val_ann_file=str(tmp_path / "val" / "annotations" / "instances.json"),
        val_image_root=str(tmp_path / "val" / "images"),
        image_size=SIZE,
        batch_size=4,
        val_batch_size=4,
        train_transform=LargeScaleJitterTransform(SIZE, scale_range=(0.75, 1.25)),
        val_transform=ResizeLongestSideTransform(SIZE),
    )
    L.seed_everything(seed)
    module = SAMPromptModule(
        image_size=SIZE,
        encoder=EncoderSize(32, 2, 2, (1,)),
        freeze_image_encoder=False,
        prompts=PromptConfig(mode="box"),
        lr=5e-4,
        min_lr_ratio=1.0,
    )
    quiet = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    before = L.Trainer(**quiet).validate(module, data, verbose=False)[0]
    L.Trainer(max_steps=200, limit_val_batches=0, enable_model_summary=False, **quiet).fit(module, data)
    after = L.Trainer(**quiet).validate(module, data, verbose=False)[0]
    print(
        f"\nSAM proof seed {seed}: held-out segm AP before training: {before['val/segm_AP']:.4f}, "
        f"after: {after['val/segm_AP']:.4f} "
        f"(mIoU {before['val/mIoU']:.3f} -> {after['val/mIoU']:.3f})"
    )
    assert after["val/segm_AP"] > before["val/segm_AP"] + 0.05
    assert after["val/mIoU"] > before["val/mIoU"] + 0.1

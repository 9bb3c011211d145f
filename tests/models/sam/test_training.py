"""Proof: a short CPU fine-tune of a tiny, randomly initialised SAM raises segm AP on held-out synthetic images."""

from __future__ import annotations

import lightning as L
import pytest

from samlab.data.datamodules import COCODataModule
from samlab.data.instance_transforms import LargeScaleJitterTransform, ResizeLongestSideTransform
from samlab.data.synth import synthesize
from samlab.models.sam.model import EncoderSize
from samlab.models.sam.module import SAMPromptModule
from samlab.models.sam.prompts import PromptConfig

SIZE = 128


@pytest.mark.slow
def test_box_fine_tune_raises_heldout_segm_ap(tmp_path):
    synthesize("coco", tmp_path / "train", videos=32, size=(96, 128), seed=10, objects=2)
    synthesize("coco", tmp_path / "val", videos=8, size=(96, 128), seed=11, objects=2)
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
    L.seed_everything(0)
    module = SAMPromptModule(
        image_size=SIZE,
        encoder=EncoderSize(32, 2, 2, (1,)),
        freeze_image_encoder=False,
        prompts=PromptConfig(mode="box"),
        lr=1e-3,
        min_lr_ratio=1.0,
    )
    quiet = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    before = L.Trainer(**quiet).validate(module, data, verbose=False)[0]
    L.Trainer(max_steps=100, limit_val_batches=0, enable_model_summary=False, **quiet).fit(module, data)
    after = L.Trainer(**quiet).validate(module, data, verbose=False)[0]
    print(
        f"held-out segm AP before training: {before['val/segm_AP']:.4f}, after: {after['val/segm_AP']:.4f} "
        f"(mIoU {before['val/mIoU']:.3f} -> {after['val/mIoU']:.3f})"
    )
    assert after["val/segm_AP"] > before["val/segm_AP"] + 0.05
    assert after["val/mIoU"] > before["val/mIoU"] + 0.1

"""Proof that training helps: on synthetic tracking videos (crossing and occluding objects, one leaving and coming
back) with the ground-truth boxes as detections, a MASA adapter trained briefly on CPU on view pairs of synthetic
images of the same style associates better (IDF1 and AssA by TrackEval) than the same model before training, under
MASA's own tracker settings (``MasaTaoTracker``, ``match_score_thr`` 0.5).

Setup: tiny SAM ViT (random, frozen), adapter without fusion blocks, MASA's heads, losses and loss weights, at the
videos' own size (128: the ViT sees 8 x 8 patches); 96 synthetic SA-1B-style images, SGD lr 0.01 (batch 4), MASA's
schedule (linear warm-up, 12 epochs, lr x 0.1 at epochs 8 and 11) on 25-step epochs: 300 steps, ~100 s on one core.

Measured, IDF1 / AssA untrained -> trained (seed 0 is the default run; all five:
``SAMLAB_MASA_PROOF_SEEDS=0,1,2,3,4 pytest -m slow tests/models/masa/test_training.py -s``, docs/benchmarks.md):
seed 0 34.88 / 21.93 -> 70.35 / 58.34; seed 1 66.86 / 47.96 -> 81.40 / 73.42; seed 2 66.09 / 56.03 -> 75.29 / 63.72;
seed 3 50.57 / 35.48 -> 74.14 / 63.69; seed 4 56.07 / 46.92 -> 82.66 / 74.39. Smallest gain 9.2 IDF1 and 7.7 AssA
(seed 2); the test asserts 5 points on both, so that a machine whose floating point differs (a different training
trajectory, as another seed) still passes.

Why the earlier version (64 px, 80 steps) showed the trained model worse (IDF1 30 vs 87): (1) its epochs were 6 steps
(24 images, batch 4) while it kept MASA's milestones [8, 11] in epochs, so the learning rate fell to 1% after step
66 and the dot-product contrastive loss (weight 0.25) never grew the embeddings enough to sharpen the bi-softmax
(norms 0.75 -> 0.3, the bi-softmax ~1 / #tracks, so a match needed a cosine above ~0.75); (2) samlab's
embedding head used PyTorch's default fc initialisation instead of mmdet's Xavier (fixed for parity: untrained
norms 1.75 instead of 0.75, as MASA's; with the old init this test's setting still gives 31.40 -> 68.60);
(3) at 64 px the ViT sees 4 x 4 patches of the whole frame: even with (1) and (2) fixed, 300 steps (lr 0.02) give
77.33 -> 50.00 IDF1 there on seed 0, 84.88 -> 79.07 on seed 1.

Deterministic (the same figures on every run of one machine): one torch thread, every generator seeded
(``seed_everything``, the pair data's per-sample seeds, the sampler's seeded order),
``torch.use_deterministic_algorithms(True)``.
"""

from __future__ import annotations

import os

import lightning as L
import pytest
import torch

from samlab.data.formats.mot import read_detections, write_mot_results
from samlab.data.pairs import MASAPairDataModule
from samlab.data.synth import synthesize
from samlab.metrics.tracking import evaluate_mot
from samlab.models.masa.module import MASAModule
from samlab.tools.mot_from_masks import write_mot_sequences
from samlab.tools.track import list_frames, track_frames

TINY_SAM = {"embed_dim": 64, "depth": 4, "num_heads": 2, "global_attn_indexes": [0, 1, 2, 3], "window_size": 4}
# MASA's released tracker settings (masa_*_tao configs): match_score_thr 0.5.
TRACKER = {"init_score_thr": 0.0001, "obj_score_thr": 0.0001, "match_score_thr": 0.5}
SEEDS = [int(s) for s in os.environ.get("SAMLAB_MASA_PROOF_SEEDS", "0").split(",")]
# The videos' own size (96 x 128 frames are not scaled): SAM's ViT sees 8 x 8 patches of 16 px.
IMAGE_SIZE = 128
STEPS_PER_EPOCH = 25
MARGIN = 5.0  # points of IDF1 and of AssA (smallest measured gain over seeds 0-4: 7.7)


def _scores(module, mot_root, out):
    for seq in sorted(p.name for p in mot_root.iterdir()):
        frames = list_frames(mot_root / seq / "img1")
        detections = read_detections(mot_root / seq / "det" / "det.txt", num_frames=len(frames))
        write_mot_results(out / f"{seq}.txt", track_frames(module, frames, detections, progress=False))
    return evaluate_mot(mot_root, out)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_trained_adapter_tracks_better_than_untrained(seed, tmp_path, capsys, deterministic_torch):
    assert torch.get_num_threads() == 1  # the MASA tests' one_torch_thread fixture
    synthesize("mose", tmp_path / "videos", videos=3, frames=16, size=(96, 128), objects=4, seed=100 + seed)
    write_mot_sequences(tmp_path / "videos", tmp_path / "mot", progress=False)
    synthesize("sa1b", tmp_path / "train", videos=96, size=(96, 128), objects=4, seed=200 + seed)
    L.seed_everything(seed)
    module = MASAModule(
        image_size=IMAGE_SIZE,
        backbone="sam",
        backbone_options={"overrides": TINY_SAM},
        channels=64,
        fusion_blocks=0,  # the deformable blocks' CPU backward is most of a step; they are tested in test_model.py
        anchor_scale=2.0,
        fc_channels=256,
        roi_samples=64,
        lr=0.01,
        warmup_iters=10,
        milestones=[8, 11],  # MASA's schedule: 12 epochs, lr x 0.1 at epochs 8 and 11
        tracker=TRACKER,
    )
    before = _scores(module, tmp_path / "mot", tmp_path / "untrained")
    # MASA's resize ratio down to 0.1 would leave 13 px views of 128 px; the proof narrows it; bad draws retry.
    data = MASAPairDataModule(
        image_size=IMAGE_SIZE,
        sa1b_root=str(tmp_path / "train"),
        batch_size=4,
        max_instances=8,
        samples_per_epoch=STEPS_PER_EPOCH * 4,  # MASA's fixed-length epochs of uniformly drawn images
        seed=seed,
        skip_bad_samples=True,
        augment={"mixup_prob": 0.0, "resize_range": [0.5, 1.5]},
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=12,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=35.0,
        limit_val_batches=0,
        deterministic=True,
    )
    module.train()
    trainer.fit(module, data)
    assert trainer.global_step == 12 * STEPS_PER_EPOCH
    after = _scores(module, tmp_path / "mot", tmp_path / "trained")
    with capsys.disabled():
        print(
            f"\nMASA proof seed {seed} at match_score_thr 0.5: untrained IDF1 {before['IDF1']:.2f} "
            f"AssA {before['AssA']:.2f}; trained IDF1 {after['IDF1']:.2f} AssA {after['AssA']:.2f}"
        )
    assert after["IDF1"] > before["IDF1"] + MARGIN
    assert after["AssA"] > before["AssA"] + MARGIN

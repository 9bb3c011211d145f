"""Proof that training helps: on synthetic tracking videos (crossing and occluding objects, one leaving and coming
back) with the ground-truth boxes as detections, a MASA adapter trained briefly on CPU on view pairs of synthetic
images of the same style should associate better (IDF1, AssA by TrackEval) than the same model untrained, under
MASA's own tracker settings (``match_score_thr`` 0.5).

Deterministic on any machine: one torch thread, every generator seeded (``seed_everything``, the pair data's
per-sample seeds, the sampler's seeded order), ``torch.use_deterministic_algorithms(True)``. Seeds beyond 0:
``SAMLAB_MASA_PROOF_SEEDS=0,1,2,3,4 pytest -m slow tests/models/masa/test_training.py -s``.

It does NOT hold today (issue 12 point 5 stays open), so the test is a strict xfail that states the measured
figures: at threshold 0.5 the untrained model matches by the near-constant cosine of random features (every
same-object score ~0.57 > 0.5, IDF1 86.63 for seed 0), while 80-240 CPU steps of the recipe's losses shrink the
embedding norms (0.75 -> 0.29), so the bi-softmax stays flat (~1 / #tracks) and a correct match needs a cosine
above ~0.75: the trained model separates objects better (cosine of different objects 0.71 -> 0.33) but fragments
tracks (IDF1 30.23 after 80 steps, 26.74 after 160). Tried without success: lr 0.005-0.04, loss_track weight 1
(norms grow to 1.5, IDF1 61 after 240 steps; at lr 0.03 the embeddings collapse), no weight decay.
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


@pytest.fixture
def deterministic_torch():
    """Deterministic kernels for the test (restored after)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


def _scores(module, mot_root, out):
    for seq in sorted(p.name for p in mot_root.iterdir()):
        frames = list_frames(mot_root / seq / "img1")
        detections = read_detections(mot_root / seq / "det" / "det.txt", num_frames=len(frames))
        write_mot_results(out / f"{seq}.txt", track_frames(module, frames, detections, progress=False))
    return evaluate_mot(mot_root, out)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="issue 12.5: at MASA's threshold 0.5 the briefly trained tiny model fragments "
    "tracks (IDF1 30.23 vs 86.63 untrained, seed 0); see the module docstring",
)
@pytest.mark.parametrize("seed", SEEDS)
def test_trained_adapter_tracks_better_than_untrained(seed, tmp_path, capsys, deterministic_torch):
    assert torch.get_num_threads() == 1  # the MASA tests' one_torch_thread fixture
    synthesize("mose", tmp_path / "videos", videos=3, frames=16, size=(96, 128), objects=4, seed=100 + seed)
    write_mot_sequences(tmp_path / "videos", tmp_path / "mot", progress=False)
    synthesize("sa1b", tmp_path / "train", videos=24, size=(96, 128), objects=4, seed=200 + seed)
    L.seed_everything(seed)
    module = MASAModule(
        image_size=64,
        backbone="sam",
        backbone_options={"overrides": TINY_SAM},
        channels=64,
        fusion_blocks=0,  # the deformable blocks' CPU backward is most of a step; they are tested in test_model.py
        anchor_scale=2.0,
        fc_channels=256,
        roi_samples=64,
        lr=0.01,
        warmup_iters=10,
        tracker=TRACKER,
    )
    before = _scores(module, tmp_path / "mot", tmp_path / "untrained")
    # 64 px views: MASA's resize ratio down to 0.1 would leave 6 px images, so the proof narrows it; bad draws retry.
    data = MASAPairDataModule(
        image_size=64,
        sa1b_root=str(tmp_path / "train"),
        batch_size=4,
        max_instances=8,
        seed=seed,
        skip_bad_samples=True,
        augment={"mixup_prob": 0.0, "resize_range": [0.5, 1.5]},
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=80,
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
    after = _scores(module, tmp_path / "mot", tmp_path / "trained")
    with capsys.disabled():
        print(
            f"\nMASA proof seed {seed} at match_score_thr 0.5: untrained IDF1 {before['IDF1']:.2f} "
            f"AssA {before['AssA']:.2f}; trained IDF1 {after['IDF1']:.2f} AssA {after['AssA']:.2f}"
        )
    assert after["IDF1"] > before["IDF1"] + 2.0
    assert after["AssA"] > before["AssA"] + 2.0

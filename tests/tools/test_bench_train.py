import json
from pathlib import Path

import numpy as np
import pytest

from samlab.cli import main
from samlab.data.datasets import ClipDataset
from samlab.models.sam2.prompts import plan_prompts
from samlab.tools.bench_train import PINNED_PLANS

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_MODEL = [
    '--model.init_args.model_overrides=["++model.image_encoder.trunk.embed_dim=32",'
    '"++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]","++model.memory_attention.num_layers=1"]',
]


def tiny_quickstart(root: Path, steps: int, *options: str) -> list[str]:
    return [
        "bench", "train", "--config", str(CONFIGS / "quickstart.yaml"), "--steps", str(steps), "--warmup", "1",
        "--json", *options, f"--data.init_args.root={root}",
        "--data.init_args.train_videos=2", "--data.init_args.val_videos=1",
        "--data.init_args.frames=4", "--data.init_args.frame_size=[48,64]", "--data.init_args.image_size=64",
        "--data.init_args.num_frames=3", "--data.init_args.batch_size=1", "--data.init_args.num_workers=0",
        *TINY_MODEL,
    ]  # fmt: skip


def test_bench_train_prints_throughput(tmp_path, capsys):
    assert main(tiny_quickstart(tmp_path / "data", 2)) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["steps"] == 2 and result["frames_per_s"] > 0
    assert result["num_frames"] == 3 and result["image_size"] == 64 and result["device"] == "cpu"
    assert result["peak_gpu_memory_gb"] is None
    assert result["frames_per_s"] == pytest.approx(3 * result["steps_per_s"])
    assert result["data_s_per_step"] > 0 and (result["pinned_plan"], result["cached_batch"]) == (None, False)


def test_pinned_plan_and_cached_batch(tmp_path, capsys, monkeypatch):
    """--pinned-plan: every timed step draws the same prompt plan (the quickstart's own prompts vary step to step);
    --cached-batch: the dataset is read for one batch only, before the timed window, which every step reuses."""
    reads: list[int] = []
    read = ClipDataset.__getitem__
    monkeypatch.setattr(ClipDataset, "__getitem__", lambda self, index: reads.append(index) or read(self, index))
    root = tmp_path / "data"
    steps = 6
    assert main(tiny_quickstart(root, steps)) == 0
    free = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert free["prompt_plans"] > 1
    assert len(reads) >= 1 + steps  # a clip per step (batch_size 1), loaded as the steps go
    reads.clear()
    assert main(tiny_quickstart(root, steps, "--pinned-plan", "box", "--cached-batch")) == 0
    pinned = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert pinned["prompt_plans"] == 1 and pinned["steps"] == steps
    assert (pinned["pinned_plan"], pinned["cached_batch"]) == ("box", True)
    assert len(reads) == 1  # the one cached batch of one clip
    plan = plan_prompts(3, PINNED_PLANS["box"], rng=np.random.default_rng(0))
    # the box plan on 3 frames: 2 conditioning frames with a box each, all 3 frames corrected with 7 clicks
    assert len(plan.init_cond_frames) == 2 and plan.box_frames == plan.init_cond_frames
    assert sorted(plan.frames_to_add_correction_pt) == [0, 1, 2] and plan.num_correction_points == 7


def test_unknown_arguments_are_refused_outside_bench_train(capsys):
    with pytest.raises(SystemExit):
        main(["data", "stats", "--format", "mose", "x", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err

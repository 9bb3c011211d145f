import json
from pathlib import Path

import pytest

from samlab.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_MODEL = [
    '--model.init_args.model_overrides=["++model.image_encoder.trunk.embed_dim=32",'
    '"++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]","++model.memory_attention.num_layers=1"]',
]


def test_bench_train_prints_throughput(tmp_path, capsys):
    argv = [
        "bench", "train", "--config", str(CONFIGS / "quickstart.yaml"), "--steps", "2", "--warmup", "1", "--json",
        f"--data.init_args.root={tmp_path / 'data'}",
        "--data.init_args.train_videos=2", "--data.init_args.val_videos=1",
        "--data.init_args.frames=4", "--data.init_args.frame_size=[48,64]", "--data.init_args.image_size=64",
        "--data.init_args.num_frames=3", "--data.init_args.batch_size=1", "--data.init_args.num_workers=0",
        *TINY_MODEL,
    ]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["steps"] == 2 and result["frames_per_s"] > 0
    assert result["num_frames"] == 3 and result["image_size"] == 64 and result["device"] == "cpu"
    assert result["peak_gpu_memory_gb"] is None
    assert result["frames_per_s"] == pytest.approx(3 * result["steps_per_s"])


def test_unknown_arguments_are_refused_outside_bench_train(capsys):
    with pytest.raises(SystemExit):
        main(["data", "stats", "--format", "mose", "x", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err

"""Training runs through the CLI: checkpoint + resume keeps the step count and schedule; DDP on CPU trains."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
TINY = {
    "model": {
        "init_args": {
            "variant": "sam2.1_hiera_t",
            "checkpoint": None,
            "warmup_steps": 2,
            "model_overrides": [
                "++model.image_encoder.trunk.embed_dim=32",
                "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
                "++model.memory_attention.num_layers=1",
                "++model.memory_attention.layer.dim_feedforward=256",
            ],
        }
    },
    "trainer": {"callbacks": [], "log_every_n_steps": 1, "enable_progress_bar": False},
}


def _config(tmp_path: Path, data_root: Path, **trainer) -> Path:
    override = yaml.safe_load(yaml.safe_dump(TINY))
    override["trainer"] |= trainer
    override["data"] = {
        "init_args": {
            "root": str(data_root),
            "train_videos": 6,
            "val_videos": 1,
            "frames": 4,
            "frame_size": [48, 64],
            "image_size": 64,
            "num_frames": 3,
            "num_workers": 0,
            "batch_size": 1,
        }
    }
    path = tmp_path / f"override_{len(list(tmp_path.glob('override_*')))}.yaml"
    path.write_text(yaml.safe_dump(override))
    return path


def _env() -> dict[str, str]:
    return os.environ | {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "samlab.cli", "fit", "--config", str(CONFIGS / "quickstart.yaml"), *args]


def _fit(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(_command(*args), capture_output=True, text=True, env=_env(), timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _lr_by_step(metrics: Path) -> dict[int, float]:
    with metrics.open() as handle:
        return {int(r["step"]): float(r["train/lr"]) for r in csv.DictReader(handle) if r.get("train/lr")}


@pytest.mark.slow
def test_resume_mid_epoch_continues_step_count_and_schedule(tmp_path):
    data = tmp_path / "data"
    ckpt = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"save_last": True, "every_n_train_steps": 4, "save_top_k": -1, "filename": "{step}"},
    }
    # The uninterrupted reference: 8 steps (epochs of 6 clips, so step 4 is mid-epoch).
    full = tmp_path / "full"
    _fit("--config", str(_config(tmp_path, data, max_steps=8, default_root_dir=str(full))),
         "--trainer.logger.init_args.save_dir", str(full))  # fmt: skip
    # The same run killed once its step-4 checkpoint exists, then resumed from last.ckpt.
    part = tmp_path / "part"
    config = _config(tmp_path, data, max_steps=8, default_root_dir=str(part), callbacks=[ckpt])
    args = ["--config", str(config), "--trainer.logger.init_args.save_dir", str(part)]
    process = subprocess.Popen(_command(*args), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not list(part.rglob("last.ckpt")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # let the checkpoint writes finish; the next save is 4 steps away
    process.kill()
    process.wait()
    killed_at = next(part.rglob("step=4.ckpt"))
    last = killed_at.parent / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == 4  # 4 of the 6 batches of the first epoch
    assert (last.parent / "config.yaml").is_file()  # the resolved config sits next to the checkpoints
    _fit(*args, "--ckpt_path", str(last))
    newest = max(part.rglob("last.ckpt"), key=lambda path: path.stat().st_mtime_ns)
    assert newest != last  # the resumed run writes its own version folder
    resumed = torch.load(newest, map_location="cpu", weights_only=False)
    assert resumed["global_step"] == 8
    reference = {}
    for metrics in full.rglob("metrics.csv"):
        reference |= _lr_by_step(metrics)
    continued = _lr_by_step(next(newest.parent.parent.glob("metrics.csv")))
    assert len(reference) >= 7 and set(continued) == {step for step in reference if step >= 4}
    for step, lr in continued.items():
        assert lr == pytest.approx(reference[step], rel=1e-9), step


@pytest.mark.slow
def test_ddp_two_cpu_processes_train(tmp_path):
    data = tmp_path / "data"
    root = tmp_path / "ddp"
    result = _fit(
        "--config",
        str(_config(tmp_path, data, max_steps=3, default_root_dir=str(root))),
        "--trainer.logger.init_args.save_dir",
        str(root),
        "--trainer.strategy=ddp_find_unused_parameters_true",
        "--trainer.devices=2",
        "--trainer.accelerator=cpu",
    )
    text = result.stdout + result.stderr
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in text
    losses = []
    for metrics in root.rglob("metrics.csv"):
        with metrics.open() as handle:
            losses += [float(r["train/loss"]) for r in csv.DictReader(handle) if r.get("train/loss")]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="Lightning's FSDP strategy needs CUDA")
def test_fsdp_trains_and_writes_a_full_checkpoint(tmp_path):
    data = tmp_path / "data"
    root = tmp_path / "fsdp"
    ckpt = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": True}}
    config = _config(tmp_path, data, max_steps=3, default_root_dir=str(root), callbacks=[ckpt])
    _fit("--config", str(config), "--trainer.logger.init_args.save_dir", str(root), "--trainer.strategy=fsdp",
         "--trainer.accelerator=cuda", "--trainer.devices=1", "--trainer.precision=bf16-mixed")  # fmt: skip
    last = next(root.rglob("last.ckpt"))
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == 3
    from samlab.models.sam2.module import SAM2VideoModule

    SAM2VideoModule.load_from_checkpoint(last, map_location="cpu")  # gathered: loads without FSDP

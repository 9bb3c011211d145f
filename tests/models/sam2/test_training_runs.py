"""Training runs through the CLI, as separate processes: a run stopped by Ctrl-C or killed resumes at the exact step,
learning rate and batch; one run writes one folder; plain progress lines off a terminal; DDP on two CPU processes."""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from tests.conftest import DISTRIBUTED_ENV

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
CONFIGS = REPO / "configs"
TINY_MODEL = {
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
# 6 training videos, one clip per batch: epochs of 6 steps, so steps 4 and 5 are mid-epoch.
TINY_DATA = {"train_videos": 6, "val_videos": 1, "frames": 4, "frame_size": [48, 64], "num_workers": 0, "batch_size": 1}
STEPS = 8


def _override(tmp_path: Path, root: Path, records: Path | None = None, **trainer) -> Path:
    """A config on top of the quickstart: tiny model and data, ``root`` as default_root_dir, last.ckpt every 2 steps
    and (``records``) a :class:`batch_recorder.RecordBatches` callback."""
    callbacks = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"save_top_k": 0, "save_last": True, "every_n_train_steps": 2},
        }
    ]
    if records is not None:
        callbacks.append({"class_path": "batch_recorder.RecordBatches", "init_args": {"path": str(records)}})
    override = {
        "trainer": {"default_root_dir": str(root), "max_steps": STEPS, "log_every_n_steps": 1, "callbacks": callbacks}
        | {"enable_progress_bar": False}
        | trainer,
        "model": {"init_args": TINY_MODEL},
        "data": {"init_args": {"root": str(tmp_path / "data")} | TINY_DATA},
    }
    path = tmp_path / f"override_{len(list(tmp_path.glob('override_*')))}.yaml"
    path.write_text(yaml.safe_dump(override))
    return path


def _env() -> dict[str, str]:
    paths = [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
    # Without the distributed variables an earlier DDP test of this process may have left (its port may still be
    # taken, and an inherited LOCAL_RANK makes the child wait for ranks it never starts).
    inherited = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    return inherited | {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(paths)}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "samlab.cli", "fit", "--config", str(CONFIGS / "quickstart.yaml"), *args]


def _fit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        _command(*args), capture_output=True, text=True, env=_env(), timeout=600, check=False, cwd=cwd
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def _records(path: Path) -> dict[int, dict]:
    """The recorded batches by step (the last record of a step wins: a resumed run repeats none)."""
    return {row["step"]: row for row in map(json.loads, path.read_text().splitlines())}


def _losses(run_folder: Path) -> dict[int, float]:
    with (run_folder / "metrics.csv").open() as handle:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(handle) if r.get("train/loss")}


def _wait_for_step(process: subprocess.Popen, records: Path, step: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if records.is_file() and step in _records(records):
            return
        time.sleep(0.02)
    raise AssertionError(f"the run ended or hung before step {step}: {process.poll()}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict[int, dict], dict[int, float]]:
    """The reference: the batches (videos, lr) and losses of an uninterrupted 8-step run."""
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    records = tmp_path / "records.jsonl"
    _fit("--config", str(_override(tmp_path, tmp_path / "runs", records)))
    return _records(records), _losses(tmp_path / "runs" / "version_0")


def _check_resumed(tmp_path: Path, root: Path, stopped_at: int, uninterrupted) -> None:
    """Resume with ``--ckpt_path last`` and compare every following step with the uninterrupted run."""
    reference, reference_losses = uninterrupted
    records = tmp_path / "resumed.jsonl"
    result = _fit("--config", str(_override(tmp_path, root, records)), "--ckpt_path", "last")
    folder = root / "version_0"
    assert f"run folder: {folder} (resuming {folder / 'checkpoints' / 'last.ckpt'})" in result.stdout
    resumed = _records(records)
    assert min(resumed) == stopped_at and sorted(resumed) == list(range(stopped_at, STEPS))
    for step, row in resumed.items():  # same step, epoch, data position and learning rate
        assert (row["epoch"], row["videos"]) == (reference[step]["epoch"], reference[step]["videos"]), step
        assert row["lr"] == pytest.approx(reference[step]["lr"], rel=1e-12), step
    losses = _losses(folder)  # the same prompts (RNG states restored) and weights: the same losses
    for step in range(stopped_at, STEPS):
        assert losses[step] == pytest.approx(reference_losses[step], rel=1e-5, abs=1e-6), step
    assert sorted(p.name for p in root.iterdir()) == ["version_0"]  # the resumed run logs into the same folder
    final = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["global_step"] == STEPS


@pytest.mark.slow
def test_ctrl_c_mid_epoch_writes_last_ckpt_and_resumes_exactly(tmp_path, uninterrupted):
    root = tmp_path / "runs"
    records = tmp_path / "records.jsonl"
    process = subprocess.Popen(
        _command("--config", str(_override(tmp_path, root, records))),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for_step(process, records, 3)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGINT, out[-3000:]
    state = torch.load(root / "version_0" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    stopped_at = state["global_step"]
    assert stopped_at in (4, 5)  # the step running at Ctrl-C was finished, mid-epoch (epochs of 6 steps)
    assert f"stopped by SIGINT at step {stopped_at} (epoch 0)" in out
    _check_resumed(tmp_path, root, stopped_at, uninterrupted)


@pytest.mark.slow
def test_killed_run_resumes_from_the_last_scheduled_checkpoint(tmp_path, uninterrupted):
    root = tmp_path / "runs"
    records = tmp_path / "records.jsonl"
    process = subprocess.Popen(
        _command("--config", str(_override(tmp_path, root, records))),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_step(process, records, 5)  # step 5 started: last.ckpt of step 4 is written
    process.kill()
    process.wait()
    checkpoints = root / "version_0" / "checkpoints"
    state = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 4
    _check_resumed(tmp_path, root, 4, uninterrupted)


def test_ckpt_path_last_without_a_run_starts_a_new_one(tmp_path, capsys, one_torch_thread):
    from samlab.cli import main

    root = tmp_path / "runs"
    override = _override(tmp_path, root, max_steps=1)
    main(["fit", "--config", str(CONFIGS / "quickstart.yaml"), "--config", str(override), "--ckpt_path", "last"])
    out = capsys.readouterr().out
    assert f"--ckpt_path last: no run of {root} has a checkpoints/last.ckpt yet: starting a new run" in out
    assert f"run folder: {root / 'version_0'}\n" in out
    assert torch.load(root / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 1


@pytest.mark.slow
def test_one_run_one_folder_and_plain_progress_lines(tmp_path):
    """With stdout redirected: the run folder on the first line, plain progress lines (no `Epoch N/-2`), and
    TensorBoard events, metrics.csv, config.yaml and only last.ckpt (no second copy) in that folder."""
    root = tmp_path / "elsewhere"
    progress = {"class_path": "samlab.callbacks.ProgressBar", "init_args": {"every_n_steps": 2}}
    override = _override(tmp_path, root, max_steps=4, enable_progress_bar=True)
    config = yaml.safe_load(override.read_text())
    config["trainer"]["callbacks"].append(progress)
    config["trainer"]["logger"] = [
        {"class_path": "samlab.loggers.TensorBoardLogger"},
        {"class_path": "samlab.loggers.CSVLogger"},
    ]
    override.write_text(yaml.safe_dump(config))
    log = tmp_path / "fit.log"
    with log.open("w") as handle:  # stdout is a file, not a terminal
        subprocess.run(
            _command("--config", str(override)), stdout=handle, stderr=subprocess.STDOUT, env=_env(), check=True
        )
    lines = log.read_text().splitlines()
    folder = root / "version_0"
    assert f"run folder: {folder}" in lines[:3]  # after Lightning's "Seed set to 0"
    plain = [line for line in lines if line.startswith("step ")]
    assert [line.split(" | ")[0] for line in plain] == ["step 2/4", "step 4/4"]
    for line in plain:
        fields = line.split(" | ")
        assert fields[1].startswith("epoch ") and fields[-2].endswith(" it/s") and fields[-1].startswith("ETA ")
        assert any(field.startswith("train/loss ") for field in fields)
    assert "Epoch 0" not in log.read_text()  # no rich bar in a file
    assert sorted(p.name for p in root.iterdir()) == ["version_0"]
    assert any(folder.glob("events.out.tfevents.*")) and (folder / "metrics.csv").is_file()
    assert (folder / "config.yaml").is_file()
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["config.yaml", "last.ckpt"]


def _documented_ddp_command() -> str:
    text = (REPO / "docs" / "multi_gpu.md").read_text()
    [line] = [line for line in text.splitlines() if line.startswith("samlab fit") and "--trainer.devices=2" in line]
    assert line in (REPO / "README.md").read_text()  # the README shows the same command
    return line


@pytest.mark.slow
def test_documented_cpu_ddp_command_trains(tmp_path):
    """The command of docs/multi_gpu.md and the README, as written, from a folder holding the repository's configs/."""
    shutil.copytree(CONFIGS, tmp_path / "configs")
    words = shlex.split(_documented_ddp_command())
    assert words[0] == "samlab"
    samlab = [sys.executable, "-m", "samlab.cli"]
    result = subprocess.run(
        samlab + words[1:], cwd=tmp_path, capture_output=True, text=True, env=_env(), timeout=900, check=False
    )
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-4000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in text
    assert "J&F before training:" in text and "J&F after training:" in text
    folder = tmp_path / "runs" / "quickstart" / "version_0"
    state = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    max_steps = int(next(w for w in words if w.startswith("--trainer.max_steps=")).split("=")[1])
    assert state["global_step"] == max_steps
    losses = _losses(folder)
    assert len(losses) == max_steps // 10 and all(torch.isfinite(torch.tensor(list(losses.values()))))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="Lightning's FSDP strategy needs CUDA")
def test_fsdp_trains_and_writes_a_full_checkpoint(tmp_path):
    root = tmp_path / "fsdp"
    config = _override(tmp_path, root, max_steps=4)
    _fit("--config", str(config), "--trainer.strategy=fsdp", "--trainer.accelerator=cuda", "--trainer.devices=1",
         "--trainer.precision=bf16-mixed")  # fmt: skip
    last = root / "version_0" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == 4
    from samlab.models.sam2.module import SAM2VideoModule

    SAM2VideoModule.load_from_checkpoint(last, map_location="cpu")  # gathered: loads without FSDP

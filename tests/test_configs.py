"""Every shipped config runs: `samlab fit` with tiny overrides (tiny data, a narrowed Hiera-tiny, one step).

This file runs the SAM 2 configs (``sam2_*.yaml``, ``quickstart.yaml``); each other model family runs its own configs in
``tests/models/<family>/test_configs.py``, and :func:`test_every_config_is_run_by_a_test` checks none is forgotten.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from samlab.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY_MODEL = {
    "variant": "sam2.1_hiera_t",
    "checkpoint": None,
    "model_overrides": [
        "++model.image_encoder.trunk.embed_dim=32",
        "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
        "++model.memory_attention.num_layers=1",
        "++model.memory_attention.layer.dim_feedforward=256",
    ],
}
TINY_DATA = {"image_size": 64, "num_frames": 3, "num_workers": 0, "batch_size": 1}
TINY_TRAINER = {"accelerator": "cpu", "devices": 1, "strategy": "auto", "fast_dev_run": 1}


def _data_override(name: str, roots: dict[str, Path], tmp_path: Path) -> dict:
    mose, sav, sav_val, sa1b = (roots.get(key) for key in ("mose", "sav", "sav_val", "sa1b"))
    if name in ("sam2_mose", "sam2_davis"):
        videos = sorted(p.name for p in (mose / "JPEGImages").iterdir())
        (tmp_path / "train.txt").write_text("\n".join(videos[:2]) + "\n")
        (tmp_path / "val.txt").write_text(videos[2] + "\n")
        data = {"root": str(mose), "val_root": str(mose)}
        data |= {"file_list": str(tmp_path / "train.txt"), "val_file_list": str(tmp_path / "val.txt")}
        if name == "sam2_davis":
            data |= {"image_dir": "JPEGImages", "annotation_dir": "Annotations"}
        return {"init_args": data | TINY_DATA}
    if name == "sam2_sav":
        return {"init_args": {"root": str(sav), "json_root": None, "val_root": str(sav_val)} | TINY_DATA}
    if name == "sam2_sa1b_sav_mix":
        images = {"root": str(sa1b), "batch_size": 2, "max_num_objects": 2, "num_workers": 0}
        videos = {"root": str(sav), "json_root": None, "val_root": str(sav_val), **TINY_DATA}
        return {
            "init_args": {
                "image_size": 64,
                "datasets": [
                    {"class_path": "samlab.data.datamodules.SA1BDataModule", "init_args": images},
                    {"class_path": "samlab.data.datamodules.SAVDataModule", "init_args": videos},
                ],
            }
        }
    if name == "quickstart":
        return {
            "init_args": {
                "root": str(tmp_path / "quickstart"),
                "train_videos": 2,
                "val_videos": 1,
                "frames": 4,
                "frame_size": [48, 64],
                **TINY_DATA,
            }
        }
    raise AssertionError(f"no tiny overrides for configs/{name}.yaml: add them here")


SAM2_CONFIGS = sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem.startswith("sam2_") or p.stem == "quickstart")


def test_every_config_is_run_by_a_test():
    """Each configs/<family>_<data>.yaml is named in tests/models/<family>/test_configs.py (SAM 2's: this file)."""
    tests = Path(__file__).resolve().parent
    for config in sorted(CONFIGS.glob("*.yaml")):
        if config.stem in SAM2_CONFIGS:
            continue
        family = config.stem.split("_")[0]
        test_file = tests / "models" / family / "test_configs.py"
        assert test_file.exists(), f"configs/{config.name}: no {test_file.relative_to(tests.parent)}"
        assert config.name in test_file.read_text(), f"configs/{config.name} is not run by {test_file}"


@pytest.mark.parametrize("config", SAM2_CONFIGS)
def test_shipped_config_runs(config, tmp_path, mose_root, sav_root, sav_val_root, sa1b_root, capsys):
    roots = {"mose": mose_root, "sav": sav_root, "sav_val": sav_val_root, "sa1b": sa1b_root}
    override = {
        "trainer": TINY_TRAINER | {"default_root_dir": str(tmp_path / "run")},
        "model": {"init_args": TINY_MODEL},
        "data": _data_override(config, roots, tmp_path),
    }
    if config != "sam2_mose":  # the MOSE recipe keeps its bf16-mixed precision, on CPU here
        override["trainer"]["precision"] = "32-true"
    override_file = tmp_path / "tiny.yaml"
    override_file.write_text(yaml.safe_dump(override))
    main(["fit", "--config", str(CONFIGS / f"{config}.yaml"), "--config", str(override_file)])
    if config == "quickstart":
        out = capsys.readouterr().out
        assert "J&F before training:" in out and "J&F after training:" in out


def test_print_config_resolves_links_and_subclasses(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / "sam2_mose.yaml"), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "samlab.models.sam2.module.SAM2VideoModule"
    assert printed["data"]["class_path"] == "samlab.data.datamodules.MOSEDataModule"
    assert printed["data"]["init_args"]["image_size"] == 1024
    assert "image_size" not in printed["model"]["init_args"]  # linked from the data side, written once
    assert printed["model"]["init_args"]["prompts"]["num_correction_pt_per_frame"] == 7


def _quickstart_override(tmp_path: Path, **trainer) -> Path:
    override = {
        "trainer": TINY_TRAINER | {"fast_dev_run": False, "default_root_dir": str(tmp_path / "run"), **trainer},
        "model": {"init_args": TINY_MODEL},
        "data": _data_override("quickstart", {}, tmp_path),
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(override))
    return path


def test_predict_writes_palette_pngs_the_readers_accept(tmp_path, capsys):
    from samlab.data.formats.davis import DAVISReader

    out = tmp_path / "pred"
    override = _quickstart_override(
        tmp_path,
        callbacks=[
            {
                "class_path": "samlab.models.sam2.writers.VOSMaskWriter",
                "init_args": {"output_dir": str(out), "layout": "davis"},
            }
        ],
        logger=False,
    )
    main(["predict", "--config", str(CONFIGS / "quickstart.yaml"), "--config", str(override)])
    val = tmp_path / "quickstart" / "val"
    printed = capsys.readouterr().out  # which data, and where the masks went
    assert f"predict: split 'val' of SynthVideoDataModule: 1 items from {val}" in printed
    assert f"predict: wrote the masks of 1 videos to {out}" in printed
    videos = sorted(p.name for p in (val / "JPEGImages").iterdir())
    assert sorted(p.name for p in out.iterdir()) == videos
    gt = DAVISReader(val)
    pngs = sorted((out / videos[0]).glob("*.png"))
    assert len(pngs) == gt[0].num_frames
    predicted = DAVISReader(val, annotation_dir=str(out))
    assert predicted[0].masks(0).size == gt[0].masks(0).size  # original resolution
    assert set(predicted[0].masks(0).ids()) == set(gt[0].masks(0).ids())  # frame 0 is the prompt itself


def test_wandb_logger_block_runs_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    override = _quickstart_override(tmp_path, max_steps=1, limit_val_batches=0, callbacks=[])
    wandb_block = yaml.safe_load((CONFIGS / "loggers" / "wandb.yaml").read_text())
    for logger in wandb_block["trainer"]["logger"]:
        if logger["class_path"].endswith("WandbLogger"):
            logger["init_args"]["save_dir"] = str(tmp_path / "runs")
    block_file = tmp_path / "wandb.yaml"
    block_file.write_text(yaml.safe_dump(wandb_block))
    main(["fit", "--config", str(CONFIGS / "quickstart.yaml"), "--config", str(block_file), "--config", str(override)])
    runs = list((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))
    assert (tmp_path / "run" / "version_0" / "metrics.csv").is_file()  # the CSV log in the run folder
    # The resolved config is the run's W&B config.
    import wandb

    logged = dict(wandb.run.config)["config"]
    wandb.finish()
    assert logged["model"]["class_path"] == "samlab.models.sam2.module.SAM2VideoModule"
    assert logged["data"]["init_args"]["image_size"] == 64


def test_tensorboard_logger_block_logs_scalars_and_config_into_the_run_folder(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    override = _quickstart_override(tmp_path, max_steps=2, log_every_n_steps=1, limit_val_batches=0, callbacks=[])
    block_file = CONFIGS / "loggers" / "tensorboard.yaml"
    main(["fit", "--config", str(CONFIGS / "quickstart.yaml"), "--config", str(block_file), "--config", str(override)])
    [version] = list((tmp_path / "run").iterdir())  # TensorBoard and CSV share one folder
    assert version.name == "version_0" and (version / "metrics.csv").is_file()
    events = EventAccumulator(str(version))
    events.Reload()
    assert "train/loss" in events.Tags()["scalars"]
    hparams = yaml.safe_load((version / "hparams.yaml").read_text())
    assert hparams["config"]["model"]["class_path"] == "samlab.models.sam2.module.SAM2VideoModule"

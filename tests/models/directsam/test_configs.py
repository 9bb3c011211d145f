"""Every DirectSAM config runs with tiny overrides: directsam_sa1b.yaml (fit), directsam_pseudo.yaml (predict,
resumable), directsam_selftrain.yaml (fit on the pseudo-labels)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from samlab.cli import main
from samlab.masks import decode_rle

from .conftest import TINY_SEGFORMER

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
TINY_DATA = {"image_size": 64, "val_image_size": 64, "batch_size": 2, "num_workers": 0}
TINY_TRAINER = {"accelerator": "cpu", "devices": 1, "precision": "32-true", "logger": False, "callbacks": []}


def _run(command: str, config: str, tmp_path: Path, data: dict, trainer: dict) -> None:
    override = {
        "trainer": TINY_TRAINER | {"default_root_dir": str(tmp_path / "run")} | trainer,
        "model": {"init_args": TINY_SEGFORMER},
        "data": {"init_args": TINY_DATA | data},
    }
    path = tmp_path / f"tiny_{config}.yaml"
    path.write_text(yaml.safe_dump(override))
    main([command, "--config", str(CONFIGS / f"{config}.yaml"), "--config", str(path)])


def _writer(out: Path) -> dict:
    return {
        "callbacks": [
            {"class_path": "samlab.models.directsam.writers.PseudoLabelWriter", "init_args": {"output_dir": str(out)}}
        ]
    }


def _predict(tmp_path: Path, format: str, root: Path, out: Path) -> None:
    _run("predict", "directsam_pseudo", tmp_path, {"format": format, "predict_root": str(root)}, _writer(out))


def test_directsam_sa1b_fit_runs(tmp_path, sa1b_root):
    _run("fit", "directsam_sa1b", tmp_path, {"root": str(sa1b_root), "val_root": str(sa1b_root)}, {"fast_dev_run": 1})


def test_directsam_pseudo_predict_writes_json_and_resumes(tmp_path, coco_root):
    out = tmp_path / "pseudo"
    _predict(tmp_path, "coco", coco_root, out)
    files = sorted(out.rglob("*.json"))
    assert len(files) == 4
    record = json.loads(files[0].read_text())
    # DirectSAM's layout, both labels at the model resolution (64 px here, 1800 in the config).
    assert set(record) == {"image_path", "image_size", "pseudo_label", "human_label"}
    assert Path(record["image_path"]).is_file() and record["image_size"] == [64, 48]
    [pseudo], [human] = record["pseudo_label"], record["human_label"]
    assert decode_rle(pseudo["label"]).shape == (64, 64) and pseudo["source"] == "DirectSAMModule"
    assert human["source"].startswith(str(coco_root))  # the dataset folder
    human = decode_rle(human["label"])
    assert human.shape == (64, 64) and human[:9].all() and 0 < human.mean() < 1  # thickness 9: band of 9 rows

    stamps = {p: p.stat().st_mtime_ns for p in files}
    files[1].unlink()
    _predict(tmp_path, "coco", coco_root, out)
    assert sorted(out.rglob("*.json")) == files
    for path, stamp in stamps.items():
        if path != files[1]:
            assert path.stat().st_mtime_ns == stamp  # not rewritten
    assert json.loads(files[1].read_text()).keys() == record.keys()  # the deleted JSON is made again


def test_directsam_selftrain_fit_runs_on_pseudo_labels(tmp_path, sa1b_root, mose_root):
    roots = []
    for format, root in (("sa1b", sa1b_root), ("mose", mose_root)):
        roots.append(str(tmp_path / f"pseudo_{format}"))
        _predict(tmp_path, format, root, Path(roots[-1]))
    assert len(list(Path(roots[1]).rglob("*.json"))) == 3 * 8  # MOSE: one JSON per annotated frame
    _run("fit", "directsam_selftrain", tmp_path, {"pseudo_label_roots": roots}, {"fast_dev_run": 1})


def _settings(config: str) -> dict:
    raw = yaml.safe_load((CONFIGS / f"{config}.yaml").read_text())
    return {"trainer": raw["trainer"], "model": raw["model"]["init_args"], "data": raw["data"]["init_args"]}


def test_configs_hold_directsam_s_stage_settings():
    # DirectSAM's train.py: AdamW, constant_with_warmup 5000, max_grad_norm 0.04; evaluate.py's validation.
    for config in ("directsam_sa1b", "directsam_selftrain"):
        s = _settings(config)
        assert (s["trainer"]["gradient_clip_val"], s["trainer"]["gradient_clip_algorithm"]) == (0.04, "norm")
        assert (s["model"]["warmup_steps"], s["model"]["weight_decay"], s["model"]["tolerance"]) == (5000, 0.0, 5)
        assert s["model"]["thresholds"] == [0.1, 0.2, 0.3, 0.4, 0.5]
        assert (s["data"]["augment_prob"], s["data"]["flip_prob"]) == (0.25, 0.0)
    stage1 = _settings("directsam_sa1b")
    assert (stage1["data"]["image_size"], stage1["data"]["thickness"], stage1["data"]["batch_size"]) == (1800, 3, 4)
    assert stage1["model"]["lr"] == 1e-4
    assert (stage1["data"]["val_image_size"], stage1["data"]["val_thickness"]) == (1024, 2)
    stage2 = _settings("directsam_pseudo")
    assert (stage2["data"]["image_size"], stage2["data"]["human_thickness"]) == (1800, 9)
    assert stage2["trainer"]["callbacks"][0]["init_args"]["threshold"] == 0.5
    stage3 = _settings("directsam_selftrain")
    assert (stage3["data"]["image_size"], stage3["data"]["batch_size"], stage3["data"]["label"]) == (1024, 4, "merged")
    assert (stage3["trainer"]["accumulate_grad_batches"], stage3["trainer"]["max_epochs"]) == (8, 5)
    assert stage3["model"]["lr"] == 5e-5

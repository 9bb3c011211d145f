"""What ends the output of a failing ``samlab fit``: the cause, the config key to change and the fix (no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from samlab.cli import main
from samlab.data.datamodules import MOSEDataModule
from samlab.data.datasets import ClipDataset
from samlab.data.formats.davis import DAVISReader
from samlab.data.sampling import ClipSampler
from samlab.data.transforms import EvalTransform
from samlab.error_reports import explain_build_error, explain_parse_error
from samlab.errors import DataError
from samlab.lightning_cli import SamlabCLI

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SAM2_OVERRIDES = [
    "++model.image_encoder.trunk.embed_dim=32",
    "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
    "++model.memory_attention.num_layers=1",
]
TINY_SAM2 = [
    "--model.init_args.variant=sam2.1_hiera_t",
    f"--model.init_args.model_overrides={json.dumps(SAM2_OVERRIDES)}",
]


def _last_lines(capsys: pytest.CaptureFixture[str], count: int) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()[-count:]


def test_missing_checkpoint_of_the_readme_command(tmp_path, capsys, monkeypatch):
    """`samlab fit --config configs/sam2_mose.yaml` without the weights: the cause, the key, the README section."""
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(CONFIGS / "sam2_mose.yaml"), *TINY_SAM2]) == 2
    cause, key, fix, where = _last_lines(capsys, 4)
    assert cause == "error: checkpoints/sam2.1_hiera_base_plus.pt: checkpoint file is missing"
    assert key == "  config key: model.init_args.checkpoint"
    assert 'README.md, section "Checkpoints"' in fix and "--model.init_args.checkpoint=PATH" in fix
    assert "null starts from random weights" in fix and where.startswith("  (raised at ")


def test_wrong_key_says_did_you_mean(capsys):
    assert main(["fit", "--config", str(CONFIGS / "quickstart.yaml"), "--data.init_args.batchsize=2"]) == 2
    cause, key, fix = _last_lines(capsys, 3)
    assert cause.startswith("error: data.init_args.batchsize: SynthVideoDataModule takes no argument 'batchsize'")
    assert "did you mean 'batch_size'" in cause
    assert key == "  config key: data.init_args.batchsize"
    assert "--data.init_args.batch_size=" in fix
    assert main(["fit", "--config", str(CONFIGS / "quickstart.yaml"), "--trainer.maxsteps=3"]) == 2
    cause, key, fix = _last_lines(capsys, 3)
    assert cause.startswith("error: unknown key 'trainer.maxsteps'; did you mean 'trainer.max_steps'")
    assert key == "  config key: trainer.maxsteps" and "--trainer.max_steps=" in fix


def test_wrong_nested_and_top_level_keys():
    message = (
        "Parser key \"data\":\n  Problem with given class_path 'samlab.data.datamodules.COCODataModule':\n"
        '    Parser key "train_transform":\n      Problem with given class_path '
        "'samlab.data.instance_transforms.LargeScaleJitterTransform':\n        Option 'hflip' is not accepted"
    )
    explained = explain_parse_error(message, [])
    assert explained.key == "data.init_args.train_transform.init_args.hflip"
    assert "did you mean 'hflip_p'?" in explained.cause
    top = explain_parse_error("Unrecognized arguments: --trainer.maxsteps=3", ["trainer.max_steps", "trainer.devices"])
    assert top.key == "trainer.maxsteps" and "did you mean 'trainer.max_steps'" in top.cause
    assert explain_parse_error("something else", []) is None


def _bank(folder: Path) -> Path:
    folder.mkdir()
    rgba = np.full((6, 6, 4), 200, dtype=np.uint8)
    assert cv2.imwrite(str(folder / "100.png"), rgba)
    records = [{"file": "100.png", "ann_id": 100, "category_id": 1}]
    (folder / "objects.json").write_text(json.dumps({"objects": records, "categories": []}))
    return folder


def test_transform_resolution_mismatch(tmp_path, capsys):
    """A transform nested in the train transform (not linked) keeps its own resolution: 1024 against image_size 64."""
    argv = [
        "fit",
        "--config",
        str(CONFIGS / "quickstart.yaml"),
        f"--data.init_args.root={tmp_path / 'data'}",
        "--data.init_args.train_transform=samlab.data.copy_paste.CopyPasteTransform",
        f"--data.init_args.train_transform.bank_dir={_bank(tmp_path / 'bank')}",
        "--data.init_args.train_transform.then=samlab.data.transforms.SAM2TrainTransform",
        *TINY_SAM2,
    ]
    assert main(argv) == 2
    cause, key, fix, _ = _last_lines(capsys, 4)
    assert "train_transform CopyPasteTransform has resolution 1024 but image_size is 64" in cause
    assert key == "  config key: data.init_args.train_transform"
    assert "samlab fit --help" in fix


def test_build_error_of_the_data_module_names_its_key():
    config = {"data": {"class_path": "samlab.data.datamodules.MOSEDataModule", "init_args": {"image_size": 64}}}
    config["data"]["init_args"]["val_transform"] = {"class_path": "EvalTransform", "init_args": {"resolution": 32}}
    with pytest.raises(ValueError) as raised:
        MOSEDataModule(image_size=64, val_transform=EvalTransform(32))
    explained = explain_build_error(raised.value, config)
    assert explained.key == "data.init_args.val_transform"
    assert str(explained).splitlines()[1] == "  config key: data.init_args.val_transform"


def test_sam_coco_recipes_take_the_transform_resolution_from_image_size(coco_root, tmp_path):
    ann, images = str(coco_root / "annotations" / "instances.json"), str(coco_root / "images")
    for config in ("sam_coco_box.yaml", "sam_coco_point.yaml"):
        assert "resolution:" not in (CONFIGS / config).read_text()
        cli = SamlabCLI(
            args=[
                "--config",
                str(CONFIGS / config),
                "--model.init_args.checkpoint=null",
                '--model.init_args.encoder={"embed_dim": 32, "depth": 2, "num_heads": 2, "global_attn_indexes": [1]}',
                f"--data.init_args.ann_file={ann}",
                f"--data.init_args.image_root={images}",
                "--data.init_args.image_size=96",
                f"--trainer.default_root_dir={tmp_path}",
                "--trainer.logger=false",
                "--trainer.accelerator=cpu",
            ],
            run=False,
        )
        assert cli.datamodule.train_transform.resolution == 96
        assert cli.datamodule.val_transform.resolution == 96
        assert cli.model.hparams.image_size == 96


def test_bad_sample_error_suggests_skip_bad_samples(mose_root, tmp_path):
    frame = tmp_path / "JPEGImages" / "v" / "00000.jpg"
    frame.parent.mkdir(parents=True)
    frame.write_bytes(b"not a jpeg")
    png = next((mose_root / "Annotations").glob("*/00000.png"))
    (tmp_path / "Annotations" / "v").mkdir(parents=True)
    (tmp_path / "Annotations" / "v" / "00000.png").write_bytes(png.read_bytes())
    dataset = ClipDataset(DAVISReader(tmp_path), ClipSampler(1, 1), EvalTransform(16))
    with pytest.raises(DataError) as raised:
        dataset[0]
    assert raised.value.path == str(frame)
    assert "skip_bad_samples: true in the data module (data.init_args) skips, logs and counts" in str(raised.value)

"""The SAM configs run: configs/sam_coco_{box,point,detectron2}.yaml with tiny overrides (tiny ViT, 64 px, synthetic
COCO data, fast_dev_run), and `samlab predict` writes mask and box results files pycocotools loads."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml
from pycocotools.coco import COCO

from samlab.cli import main

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
TINY_MODEL = {
    "checkpoint": None,
    "encoder": {"embed_dim": 32, "depth": 2, "num_heads": 2, "global_attn_indexes": [1]},
    "prompt_chunk_size": 2,
}
TINY_TRANSFORM = {"init_args": {"resolution": 64}}


def _override(tmp_path: Path, coco_root: Path, **trainer) -> Path:
    ann = str(coco_root / "annotations" / "instances.json")
    images = str(coco_root / "images")
    override = {
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "strategy": "auto",  # the Detectron2 recipe's DDP strategy would start a process group in this process
            "precision": "32-true",
            "default_root_dir": str(tmp_path / "run"),
            "logger": False,
            **trainer,
        },
        "model": {"init_args": TINY_MODEL},
        "data": {
            "init_args": {
                "ann_file": ann,
                "image_root": images,
                "val_ann_file": ann,
                "val_image_root": images,
                "image_size": 64,
                "num_workers": 0,
                "batch_size": 2,
                "val_batch_size": 2,
                "train_transform": TINY_TRANSFORM,
                "val_transform": TINY_TRANSFORM,
            }
        },
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(override))
    return path


@pytest.mark.parametrize("config", ["sam_coco_box.yaml", "sam_coco_point.yaml", "sam_coco_detectron2.yaml"])
def test_shipped_config_runs(config, tmp_path, coco_root):
    override = _override(tmp_path, coco_root, fast_dev_run=1, callbacks=[])
    main(["fit", "--config", str(CONFIGS / config), "--config", str(override)])


def test_detectron2_config_is_the_reference_recipe():
    init = yaml.safe_load((CONFIGS / "sam_coco_detectron2.yaml").read_text())
    model, trainer = init["model"]["init_args"], init["trainer"]
    assert model["freeze_image_encoder"] and model["freeze_prompt_encoder"] and not model["freeze_mask_decoder"]
    assert model["loss_weights"] == {"weight_focal": 0.0, "weight_dice": 1.0, "weight_iou": 0.0}
    assert model["dice_reduction"] == "image" and model["lr"] == 1.6e-4 and model["weight_decay"] == 0.1
    assert model["decay_biases"] and model["variant"] == "vit_h" and model["result_score"] == "predicted_iou"
    assert model["prompts"] == {
        "mode": "box",
        "box_noise": 0.0,
        "num_correction_steps": 0,
        "eval_mode": "box",
        "multimask": "never",
    }
    assert trainer["devices"] * init["data"]["init_args"]["batch_size"] == 64 and trainer["precision"] == "16-mixed"
    assert model["lr_milestones"] == [52500, 62500] and trainer["max_steps"] == 67500


def test_predict_writes_result_segm_json_that_pycocotools_loads(tmp_path, coco_root):
    out = tmp_path / "pred"
    writer = {
        "class_path": "samlab.models.sam.writers.COCOResultsWriter",
        "init_args": {"output_dir": str(out), "filename": "result.segm.json"},
    }
    override = _override(tmp_path, coco_root, callbacks=[writer])
    main(["predict", "--config", str(CONFIGS / "sam_coco_box.yaml"), "--config", str(override)])
    results = json.loads((out / "result.segm.json").read_text())
    boxes = json.loads((out / "result.bbox.json").read_text())
    assert [{k: v for k, v in r.items() if k != "segmentation"} for r in results] == [
        {k: v for k, v in b.items() if k != "bbox"} for b in boxes
    ]
    assert all(len(b["bbox"]) == 4 and "segmentation" not in b and "bbox" not in r for b, r in zip(boxes, results))
    gt_file = coco_root / "annotations" / "instances.json"
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dt = gt.loadRes(str(out / "result.segm.json"))
    instances = [a for a in gt.dataset["annotations"] if not a["iscrowd"]]
    assert len(results) == len(dt.anns) == len(instances)  # one prediction per instance
    assert isinstance(results[0]["segmentation"]["counts"], str)
    for result in results:
        image = gt.imgs[result["image_id"]]
        assert result["segmentation"]["size"] == [image["height"], image["width"]]  # original size
    assert sorted((r["image_id"], r["category_id"]) for r in results) == sorted(
        (a["image_id"], a["category_id"]) for a in instances
    )
    assert main(["eval", "coco", "--gt", str(gt_file), "--pred", str(out / "result.segm.json"), "--json"]) == 0

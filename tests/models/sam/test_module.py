import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import StochasticWeightAveraging
from segment_anything.utils.transforms import ResizeLongestSide

from samlab.data.datamodules import COCODataModule
from samlab.data.instance_transforms import LargeScaleJitterTransform, ResizeLongestSideTransform
from samlab.masks import decode_segmentation
from samlab.metrics.coco import load_coco_gt
from samlab.models.sam.model import EncoderSize
from samlab.models.sam.module import SAMPromptModule
from samlab.models.sam.prompts import PromptConfig, evaluation_prompts

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
TINY = EncoderSize(32, 2, 2, (1,))
SIZE = 64


def _datamodule(coco_root, **kwargs):
    ann = str(coco_root / "annotations" / "instances.json")
    images = str(coco_root / "images")
    dm = COCODataModule(
        ann_file=ann,
        image_root=images,
        val_ann_file=ann,
        val_image_root=images,
        image_size=SIZE,
        batch_size=2,
        val_batch_size=2,
        train_transform=LargeScaleJitterTransform(SIZE),
        val_transform=ResizeLongestSideTransform(SIZE),
        **kwargs,
    )
    dm.setup("fit")
    return dm


def _batch(dm, split="val"):
    return dm.normalize(next(iter(dm.loader(split))))


def _trainer(**kwargs):
    defaults = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    return L.Trainer(**(defaults | kwargs))


def test_training_losses_average_over_objects_whatever_the_chunk_size(coco_root):
    dm = _datamodule(coco_root)
    batch = _batch(dm, "train")
    assert batch.num_objects >= 3
    config = PromptConfig(mode="box", box_noise=0.0)  # deterministic prompts: tight boxes
    losses = {}
    for chunk in (1, 2, 64):
        torch.manual_seed(0)
        module = SAMPromptModule(image_size=SIZE, encoder=TINY, prompts=config, prompt_chunk_size=chunk)
        losses[chunk] = module.training_losses(batch)
    for chunk in (1, 2):
        for key in ("loss", "loss_focal", "loss_dice", "loss_iou"):
            assert float(losses[chunk][key]) == pytest.approx(float(losses[64][key]), rel=1e-5)
    total = losses[64]
    assert float(total["loss"]) == pytest.approx(
        float(20 * total["loss_focal"] + total["loss_dice"] + total["loss_iou"]), rel=1e-6
    )
    assert 0 < float(total["loss_dice"]) < 1  # a mean over objects, not a sum


def test_frozen_parts_get_no_gradient_and_correction_steps_add_losses(coco_root):
    batch = _batch(_datamodule(coco_root), "train")
    torch.manual_seed(0)
    module = SAMPromptModule(
        image_size=SIZE,
        encoder=TINY,
        freeze_image_encoder=True,
        freeze_prompt_encoder=True,
        prompts=PromptConfig(mode="point", max_points=2, max_negative_points=1, num_correction_steps=2),
    )
    losses = module.training_losses(batch)
    losses["loss"].backward()
    assert all(p.grad is None for p in module.model.image_encoder.parameters())
    assert all(p.grad is None for p in module.model.prompt_encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.model.mask_decoder.parameters())
    # three rounds (first prompt + 2 corrections) of dice, each < 1 per object
    assert 1.0 < float(losses["loss_dice"]) < 3.0


def test_predict_objects_with_tta_at_original_size(coco_root):
    dm = _datamodule(coco_root)
    batch = _batch(dm)
    module = SAMPromptModule(image_size=SIZE, encoder=TINY, tta_scales=[1.0, 0.5], tta_hflip=True).eval()
    predictions = module.predict_objects(batch, load_coco_gt(coco_root / "annotations" / "instances.json"))
    assert len(predictions) == batch.batch_size
    for b, prediction in enumerate(predictions):
        height, width = batch.orig_sizes[b].tolist()
        assert prediction.masks.shape == (len(prediction.objects), height, width)
        assert prediction.masks.dtype == torch.bool
        assert torch.equal(batch.clip_index[prediction.objects], torch.full_like(prediction.objects, b))
        assert prediction.scores.shape == (len(prediction.objects),)


def test_validation_logs_coco_numbers_equal_to_the_evaluator(coco_root):
    dm = _datamodule(coco_root)
    torch.manual_seed(0)
    module = SAMPromptModule(image_size=SIZE, encoder=TINY)
    [metrics] = _trainer().validate(module, dm, verbose=False)
    assert set(metrics) >= {"val/segm_AP", "val/bbox_AP", "val/segm_AP50", "val/mIoU"}
    # the same predictions scored by hand: mIoU against the GT annotations at the original size
    gt = load_coco_gt(coco_root / "annotations" / "instances.json")
    ious = []
    for batch in dm.loader("val"):
        for prediction in module.predict_objects(dm.normalize(batch), gt):
            for o, mask in zip(prediction.objects.tolist(), prediction.masks.numpy()):
                ann = gt.anns[int(batch.object_ids[o])]
                truth = decode_segmentation(ann["segmentation"], *mask.shape)
                ious.append((mask & truth).sum() / (mask | truth).sum())
    assert metrics["val/mIoU"] == pytest.approx(float(np.mean(ious)), abs=1e-6)


def test_preview_prompts_follow_the_config_and_batch_order(coco_root):
    batch = _batch(_datamodule(coco_root))
    module = SAMPromptModule(
        image_size=SIZE, encoder=TINY, prompts=PromptConfig(mode="point", max_points=3, max_negative_points=2)
    )
    previews = module.preview_prompts(batch)
    assert len(previews) == batch.num_objects
    for o, preview in enumerate(previews):
        assert preview["box"] is None
        labels = preview["point_labels"]
        assert 1 <= (labels == 1).sum() <= 3 and (labels == 0).sum() <= 2 and len(preview["points"]) == len(labels)
        mask = batch.masks[0, o].numpy()
        for (x, y), label in zip(preview["points"].astype(int), labels):
            assert mask[y, x] == bool(label)  # positives inside the object, negatives outside
    assert [p["points"].tolist() for p in module.preview_prompts(batch)] == [p["points"].tolist() for p in previews]
    boxes = SAMPromptModule(image_size=SIZE, encoder=TINY).preview_prompts(batch)
    assert all(p["box"].shape == (4,) and len(p["points"]) == 0 for p in boxes)


def test_swa_of_the_config_leaves_the_averaged_weights(coco_root):
    callbacks = yaml.safe_load((CONFIGS / "sam_coco_box.yaml").read_text())["trainer"]["callbacks"]
    [swa_args] = [c["init_args"] for c in callbacks if c["class_path"].endswith("StochasticWeightAveraging")]
    swa = StochasticWeightAveraging(**(swa_args | {"swa_epoch_start": 1}))
    module = SAMPromptModule(image_size=SIZE, encoder=TINY, lr=1e-3)
    trainer = _trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=0, callbacks=[swa])
    trainer.fit(module, _datamodule(coco_root))
    assert int(swa.n_averaged) >= 2  # several weight sets were averaged (SWA epochs 1 and 2)
    averaged = dict(swa._average_model.named_parameters())
    for name, param in module.named_parameters():
        assert torch.equal(param.detach(), averaged[name].detach()), name


def test_images_of_another_size_are_refused(coco_root):
    batch = _batch(_datamodule(coco_root))
    module = SAMPromptModule(image_size=2 * SIZE, encoder=TINY)
    with pytest.raises(ValueError, match="resolution of data image_size"):
        module.training_losses(batch)


SAM2_TINY = {
    "backend": "sam2",
    "variant": "sam2.1_hiera_t",
    "model_overrides": [
        "++model.image_encoder.trunk.embed_dim=32",
        "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
        "++model.memory_attention.num_layers=1",
        "++model.memory_attention.layer.dim_feedforward=256",
    ],
}


def test_sam2_backend_trains_and_evaluates(coco_root):
    dm = _datamodule(coco_root)
    torch.manual_seed(0)
    module = SAMPromptModule(
        image_size=SIZE,
        prompts=PromptConfig(mode="mix", max_points=2, num_correction_steps=1),
        freeze_image_encoder=False,
        **SAM2_TINY,
    )
    features = module.embed(_batch(dm).images[0])
    assert features.embedding.shape[-2:] == (SIZE // 16, SIZE // 16)
    assert [f.shape[-1] for f in features.high_res] == [SIZE // 4, SIZE // 8]
    losses = module.training_losses(_batch(dm, "train"))
    losses["loss"].backward()
    assert any(p.grad is not None for p in module.model.image_encoder.parameters())
    assert any(p.grad is not None for p in module.model.sam_mask_decoder.parameters())
    [metrics] = _trainer().validate(module.eval(), dm, verbose=False)
    assert 0.0 <= metrics["val/mIoU"] <= 1.0 and "val/segm_AP" in metrics
    with pytest.raises(ValueError, match="backend"):
        SAMPromptModule(image_size=SIZE, backend="sam3")


def test_validation_images_draw_prompts_and_map_predictions_back_to_the_input(coco_root):
    from samlab.models.sam.module import ImagePrediction

    batch = _batch(_datamodule(coco_root))
    module = SAMPromptModule(image_size=SIZE, encoder=TINY).eval()
    objects = batch.objects_of(0)
    height, width = batch.orig_sizes[0].tolist()
    full = torch.ones((len(objects), height, width), dtype=torch.bool)  # every object predicted everywhere
    gt = load_coco_gt(coco_root / "annotations" / "instances.json")
    boxes = torch.tensor([gt.anns[int(i)]["bbox"] for i in batch.object_ids[objects]]) * SIZE / max(height, width)
    prediction = ImagePrediction(
        image_id=0,
        objects=objects,
        detections=[],
        prompts=evaluation_prompts("box", torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1), None),
        candidates=full[:, None],
        candidate_scores=torch.ones(len(objects), 1),
        best=torch.zeros(len(objects), dtype=torch.int64),
    )
    [(caption, strip)] = module.validation_images(batch, {"predictions": [prediction]}, max_images=1)
    assert batch.video_names[0] in caption and strip.shape == (SIZE, 2 * SIZE + 2, 3)
    left, right = strip[:, :SIZE].astype(int), strip[:, SIZE + 2 :].astype(int)
    scale = SIZE / max(height, width)
    inside_h, inside_w = round(height * scale), round(width * scale)
    image = batch.images[0, 0].permute(1, 2, 0) * torch.tensor([0.229, 0.224, 0.225]) + torch.tensor(
        [0.485, 0.456, 0.406]
    )
    image = (image * 255).round().clamp(0, 255).numpy()
    assert np.abs(right[: inside_h - 1, : inside_w - 1] - image[: inside_h - 1, : inside_w - 1]).mean() > 20  # tinted
    if inside_h < SIZE:
        assert np.abs(right[inside_h:] - image[inside_h:]).max() <= 1  # padding untouched
    # box prompts (box mode is the default evaluation prompt) are drawn on the left panel in the object's colour
    assert not np.array_equal(left, right)


def test_image_dice_is_one_soft_dice_over_the_objects_of_each_image(coco_root):
    batch = _batch(_datamodule(coco_root), "train")
    prompts = PromptConfig(mode="box", box_noise=0.0, multimask="never")
    weights = {"weight_focal": 0.0, "weight_dice": 1.0, "weight_iou": 0.0}
    torch.manual_seed(0)
    module = SAMPromptModule(
        image_size=SIZE,
        encoder=TINY,
        prompts=prompts,
        loss_weights=weights,
        dice_reduction="image",
        prompt_chunk_size=1,  # the sums run over chunks
    )
    losses = module.training_losses(batch)
    # by hand: every object's upsampled logits, one Dice per image over all its objects' pixels, mean over images
    dices = []
    for b in range(batch.batch_size):
        objects = batch.objects_of(b)
        targets = batch.masks[0, objects]
        features = module.embed(batch.images[0])
        from samlab.models.sam.model import decode
        from samlab.models.sam.prompts import sample_prompts

        logits, _ = decode(module.model, features.image(b), sample_prompts(targets, prompts))
        prob = module._upsample(logits)[:, 0].sigmoid()
        dices.append(1 - (2 * (prob * targets).sum() + 1e-6) / (prob.sum() + targets.sum() + 1e-6))
    assert float(losses["loss_dice"]) == pytest.approx(float(torch.stack(dices).mean()), rel=1e-5)
    assert float(losses["loss"]) == pytest.approx(float(losses["loss_dice"]), rel=1e-6)
    losses["loss"].backward()
    assert any(p.grad is not None for p in module.model.mask_decoder.parameters())


def test_step_schedule_is_detectron2s_warmup_multistep():
    from fvcore.common.param_scheduler import MultiStepParamScheduler

    from samlab.models.sam.module import step_lr_factor

    # the reference's lr_multiplier: fvcore's MultiStepParamScheduler inside detectron2's linear warm-up
    steps = MultiStepParamScheduler(values=[1.0, 0.1, 0.01], milestones=[52500, 62500], num_updates=67500)
    for step in (250, 1000, 52499, 52500, 60000, 62499, 62500, 67499):
        assert step_lr_factor(step, 250, 0.001, [52500, 62500]) == pytest.approx(steps(step / 67500))
    assert step_lr_factor(0, 250, 0.001, [52500, 62500]) == pytest.approx(0.001)  # warm-up from 0.001 x lr
    assert step_lr_factor(125, 250, 0.001, [52500, 62500]) == pytest.approx(0.001 * 0.5 + 0.5)


def test_eval_prompts_are_the_annotations_coco_boxes_and_centres(coco_root):
    batch = _batch(_datamodule(coco_root))
    gt = load_coco_gt(coco_root / "annotations" / "instances.json")
    for mode, field in (("box", "boxes"), ("box_center", "points")):
        module = SAMPromptModule(image_size=SIZE, encoder=TINY, prompts=PromptConfig(eval_mode=mode)).eval()
        [first, *_] = module.predict_objects(batch, gt)
        height, width = batch.orig_sizes[0].tolist()
        x, y, w, h = gt.anns[int(batch.object_ids[first.objects[0]])]["bbox"]
        # the reference's mapper: segment_anything's ResizeLongestSide on the COCO box (xyxy) and on its centre
        resize = ResizeLongestSide(SIZE)
        expected = resize.apply_boxes(np.array([[x, y, x + w, y + h]]), (height, width))[0].tolist()
        if mode == "box_center":
            expected = resize.apply_coords(np.array([[x + w / 2, y + h / 2]]), (height, width))[0].tolist()
        assert getattr(first.prompts, field)[0].flatten().tolist() == pytest.approx(expected, rel=1e-5)
        assert first.image_id == gt.anns[int(batch.object_ids[first.objects[0]])]["image_id"]


def test_detector_prompts_constant_scores_and_all_masks(coco_root, tmp_path):
    gt = load_coco_gt(coco_root / "annotations" / "instances.json")
    anns = [a for a in gt.dataset["annotations"] if not a["iscrowd"]]
    detections = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.5 + 0.01 * k}
        for k, a in enumerate(anns)
    ]
    detections.append({"image_id": anns[0]["image_id"], "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.1})
    silent = anns[-1]["image_id"]  # an image the detector found nothing in: its instances are misses
    detections = [d for d in detections if d["image_id"] != silent]
    path = tmp_path / "detections.json"
    path.write_text(json.dumps(detections))
    dm = _datamodule(coco_root)
    torch.manual_seed(0)
    module = SAMPromptModule(
        image_size=SIZE,
        encoder=TINY,
        detections=str(path),
        result_score="constant",
        prompts=PromptConfig(multimask="always"),
        predict_all_masks=True,
    )
    [metrics] = _trainer().validate(module, dm, verbose=False)
    assert "val/mIoU" not in metrics and 0.0 <= metrics["val/segm_AP"] <= 1.0
    results = [r for part in _trainer().predict(module, dm) for r in part]
    expected = detections
    assert silent not in {r["image_id"] for r in results}
    assert len(results) == 3 * len(expected)  # every detection, three masks each
    assert sorted({r["mask_index"] for r in results}) == [0, 1, 2]
    assert sorted(r["score"] for r in results) == pytest.approx(sorted(d["score"] for d in expected for _ in range(3)))
    with pytest.raises(ValueError, match="eval_mode"):
        SAMPromptModule(image_size=SIZE, encoder=TINY, detections=str(path), prompts=PromptConfig(mode="point"))
    with pytest.raises(ValueError, match="multimask to 'always'"):
        SAMPromptModule(image_size=SIZE, encoder=TINY, predict_all_masks=True)


@pytest.mark.parametrize("eval_mode", ["box", "mask_center"])
def test_an_image_without_instances_is_evaluated_with_no_prompt(coco_root, eval_mode):
    import dataclasses

    batch = _batch(_datamodule(coco_root))
    keep = batch.clip_index != 0  # image 0 loses its instances
    empty = dataclasses.replace(
        batch,
        masks=batch.masks[:, keep],
        clip_index=batch.clip_index[keep],
        object_ids=batch.object_ids[keep],
        labels=batch.labels[keep],
        obj_to_frame_idx=batch.obj_to_frame_idx[:, keep],
    )
    gt = load_coco_gt(coco_root / "annotations" / "instances.json")
    module = SAMPromptModule(image_size=SIZE, encoder=TINY, prompts=PromptConfig(eval_mode=eval_mode)).eval()
    first, second = module.predict_objects(empty, gt)[:2]
    assert len(first.prompts) == 0 and first.masks.shape == (0, *batch.orig_sizes[0].tolist())
    assert len(second.prompts) == int((batch.clip_index == 1).sum())


@pytest.mark.parametrize("decay_biases", [False, True])
def test_weight_decay_groups(decay_biases):
    module = SAMPromptModule(image_size=SIZE, encoder=TINY, weight_decay=0.1, decay_biases=decay_biases)
    module._trainer = L.Trainer(accelerator="cpu", max_steps=10, logger=False, enable_checkpointing=False)
    groups = module.configure_optimizers()["optimizer"].param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.1 for p in g["params"]}
    params = dict(module.model.named_parameters())
    assert id(params["mask_decoder.output_upscaling.1.weight"]) not in decayed  # LayerNorm2d
    assert id(params["mask_decoder.transformer.norm_final_attn.bias"]) not in decayed  # LayerNorm
    assert id(params["mask_decoder.iou_prediction_head.layers.0.weight"]) in decayed
    assert (id(params["mask_decoder.iou_prediction_head.layers.0.bias"]) in decayed) == decay_biases

"""``samlab export``: each format loaded by its target library's own loader gives samlab's outputs; HF folders and
exports load back as ``checkpoint:``; a samlab -> HF -> samlab round trip is bit-identical.

Every model is tiny, randomly initialised and trained a few steps in samlab (so the weights are not the init).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from PIL import Image
from torch.utils.data import DataLoader

from samlab.data.batch import collate_clips
from samlab.data.sampling import Clip
from samlab.errors import DataError
from samlab.export import export, load_module_export, rebuild_module
from samlab.models.sam.model import EncoderSize, ImageFeatures, decode, embed_images
from samlab.models.sam.prompts import Prompts
from samlab.models.sam2.prompts import PromptConfig

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")

SAM2_SMALL = [
    "++model.image_encoder.trunk.embed_dim=32",
    "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.dim_feedforward=256",
]
CLICKS = PromptConfig(
    prob_to_use_pt_input_for_train=1.0,
    prob_to_use_box_input_for_train=0.0,
    num_init_cond_frames_for_train=1,
    num_frames_to_correct_for_train=1,
    num_correction_pt_per_frame=1,
)


def clip_batch(size: int, num_frames: int, seed: int = 0):
    """One clip of ``num_frames`` noise frames with two rectangles as objects (a :class:`VideoBatch`)."""
    generator = np.random.default_rng(seed)
    masks = np.zeros((num_frames, 2, size, size), dtype=bool)
    masks[:, 0, size // 16 : size // 2, size // 8 : size * 5 // 8] = True
    masks[:, 1, size * 9 // 16 : size * 15 // 16, size // 4 : size * 3 // 4] = True
    frames = [torch.from_numpy(generator.standard_normal((3, size, size), dtype=np.float32)) for _ in masks]
    return collate_clips([Clip("clip", frames, masks, [1, 2], list(range(num_frames)), (size, size))])


def train_and_save(module: LightningModule, batches: list, path: Path) -> Path:
    """A few samlab training steps of ``module`` on ``batches``, saved as a Lightning checkpoint at ``path``."""
    torch.manual_seed(0)
    trainer = Trainer(
        max_steps=len(batches),
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def sam2_run(tmp_path_factory):
    """A SAM 2.1 video module with LoRA, trained 3 steps at 64 px: ``(module, untrained state, checkpoint)``."""
    from samlab.models.sam2.module import SAM2VideoModule

    torch.manual_seed(0)
    module = SAM2VideoModule(
        variant="sam2.1_hiera_t", image_size=64, model_overrides=SAM2_SMALL, lora_rank=2, prompts=CLICKS, lr=1e-3
    )
    module.configure_optimizers = lambda: torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], 1e-2)
    init = {k: v.clone() for k, v in module.model.state_dict().items()}
    path = train_and_save(
        module, [clip_batch(64, 3, seed) for seed in range(3)], tmp_path_factory.mktemp("sam2") / "a.ckpt"
    )
    return module.eval(), init, path


def write_video(folder: Path, frames: int = 4) -> Path:
    folder.mkdir()
    generator = np.random.default_rng(3)
    for t in range(frames):
        Image.fromarray(generator.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(folder / f"{t:05d}.jpg")
    return folder


def test_sam2_export_is_what_the_official_video_predictor_loads_and_segments_alike(sam2_run, tmp_path, capsys):
    """Strict loading by ``build_sam2_video_predictor`` from the printed config; its VOS masks (first-frame masks)
    and its masks for a click equal samlab's (the trained module, LoRA unmerged) on > 99.9 % of pixels."""
    from sam2.build_sam import build_sam2_video_predictor

    from samlab.models.sam2.vos import segment_video

    module, init, ckpt = sam2_run
    result = export(ckpt, "sam2", tmp_path / "sam2.pt")
    assert result["config_file"] == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert result["hydra_overrides_extra"][0] == "++model.image_size=64"
    saved = torch.load(tmp_path / "sam2.pt", weights_only=True)
    assert not any("lora" in key or "base_layer" in key for key in saved["model"])
    qkv = "image_encoder.trunk.blocks.0.attn.qkv.weight"
    assert not torch.equal(saved["model"][qkv], init[qkv.replace("qkv.", "qkv.base_layer.")])  # LoRA merged in
    # Post-processing (hole filling, stability-based mask choice) is an inference option the checkpoint does not
    # carry, and samlab's VOS does not apply it: compare the models themselves.
    predictor = build_sam2_video_predictor(
        result["config_file"],
        str(tmp_path / "sam2.pt"),
        device="cpu",
        hydra_overrides_extra=result["hydra_overrides_extra"],
        apply_postprocessing=False,
    )
    video = write_video(tmp_path / "video")
    state = predictor.init_state(str(video))
    gt = torch.zeros(4, 2, 64, 64, dtype=torch.bool)
    gt[0, 0, 8:30, 10:40] = True
    gt[0, 1, 36:60, 20:50] = True
    for o in range(2):
        predictor.add_new_mask(state, frame_idx=0, obj_id=o + 1, mask=gt[0, o])
    with torch.no_grad():
        expected = {t: logits[:, 0] > 0 for t, _, logits in predictor.propagate_in_video(state)}
        masks = segment_video(module.model, state["images"], gt, output_size=(48, 80), non_overlapping=False)
    for t in range(1, 4):
        assert (masks[t] != expected[t]).float().mean() < 1e-3, t

    # A click (x, y) = (30, 20) in the 80 x 48 video on frame 0, through the official predictor and samlab's decode.
    predictor.reset_state(state)
    with torch.no_grad():
        _, _, official = predictor.add_new_points_or_box(
            state, frame_idx=0, obj_id=1, points=np.array([[30.0, 20.0]]), labels=np.array([1])
        )
        features = embed_images(module.model, state["images"][:1])
        click = Prompts(
            points=torch.tensor([[[30.0 * 64 / 80, 20.0 * 64 / 48]]]),
            point_labels=torch.ones(1, 1, dtype=torch.int32),
            boxes=torch.zeros(1, 4),
            has_box=torch.zeros(1, dtype=torch.bool),
        )
        low_res, ious = decode(module.model, features, click, multimask=True)
    best = low_res[0, ious[0].argmax()][None, None]
    ours = F.interpolate(best, (48, 80), mode="bilinear", align_corners=False)[0, 0] > 0
    assert ours.any()
    assert (ours != (official[0, 0] > 0)).float().mean() < 1e-3


def test_sam2_hf_export_gives_sam2model_masks_and_scores_and_round_trips_bit_identical(sam2_run, tmp_path):
    """``Sam2Model.from_pretrained`` (and ``Sam2VideoModel``) load the folder; masks and IoU scores for a box and
    for two points equal samlab's within 1e-4 (transformers re-implements the model: attention and positional
    encodings are recomputed in another order, hence not bit-equal); loading the folder back as ``checkpoint:``
    gives every weight bit-identical, with a complete key report."""
    from transformers import Sam2Model, Sam2Processor, Sam2VideoModel

    from samlab.models.sam2.model import build_sam2_model, load_checkpoint

    module, _, ckpt = sam2_run
    result = export(ckpt, "hf", tmp_path / "hf")
    hf = Sam2Model.from_pretrained(result["out"]).eval()
    Sam2VideoModel.from_pretrained(result["video"])
    assert Sam2Processor.from_pretrained(result["out"]).image_processor.size == {"height": 64, "width": 64}
    generator = np.random.default_rng(5)
    images = torch.from_numpy(generator.standard_normal((1, 3, 64, 64), dtype=np.float32))
    features = embed_images(module.model, images)
    cases = {
        "box": (None, None, torch.tensor([[[8.0, 6.0, 40.0, 30.0]]])),
        "points": (torch.tensor([[[[20.0, 12.0], [44.0, 40.0]]]]), torch.tensor([[[1, 0]]]), None),
    }
    for name, (points, labels, boxes) in cases.items():
        with torch.no_grad():
            theirs = hf(
                pixel_values=images, input_points=points, input_labels=labels, input_boxes=boxes, multimask_output=False
            )
            prompt = Prompts(
                points=points[0] if points is not None else torch.zeros(1, 0, 2),
                point_labels=labels[0].int() if labels is not None else torch.zeros(1, 0, dtype=torch.int32),
                boxes=boxes[0] if boxes is not None else torch.zeros(1, 4),
                has_box=torch.tensor([boxes is not None]),
            )
            low_res, ious = decode(module.model, features, prompt, multimask=False)
        torch.testing.assert_close(theirs.pred_masks[0], low_res, atol=1e-4, rtol=1e-4, msg=name)
        torch.testing.assert_close(theirs.iou_scores[0], ious, atol=1e-4, rtol=1e-4, msg=name)

    plain = export_state(ckpt, tmp_path)
    # The sam2 export itself is a checkpoint: too (complete report, same weights).
    fresh = build_sam2_model("sam2.1_hiera_t", image_size=64, train=False, overrides=SAM2_SMALL)
    assert load_checkpoint(fresh, tmp_path / "ref.pt").complete
    assert all(torch.equal(v, plain[k]) for k, v in fresh.state_dict().items())
    for folder in (result["video"], result["out"]):
        fresh = build_sam2_model("sam2.1_hiera_t", image_size=64, train=False, overrides=SAM2_SMALL)
        report = load_checkpoint(fresh, folder)
        loaded = fresh.state_dict()
        assert all(torch.equal(loaded[k], plain[k]) for k in loaded if k not in report.missing)
        assert not report.unexpected
        if folder == result["video"]:
            assert report.complete
        else:  # the image model has no memory parts: only those are missing
            assert report.missing
            assert not any(
                k.startswith(("image_encoder.", "sam_prompt_encoder.", "sam_mask_decoder.")) for k in report.missing
            )


def export_state(ckpt: Path, tmp_path: Path) -> dict[str, torch.Tensor]:
    """The official-key weights of the ``sam2`` export of ``ckpt``."""
    export(ckpt, "sam2", tmp_path / "ref.pt")
    return torch.load(tmp_path / "ref.pt", weights_only=True)["model"]


def test_sam2_image_backend_exports_for_sam2_image_predictor(tmp_path):
    """A SAM prompt module with the SAM 2 backend exports to ``sam2``; ``build_sam2`` loads it strictly and
    ``SAM2ImagePredictor`` gives samlab's box logits and IoU within 1e-4."""
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from samlab.models.sam.module import SAMPromptModule

    torch.manual_seed(0)
    module = SAMPromptModule(variant="sam2.1_hiera_t", backend="sam2", image_size=64, model_overrides=SAM2_SMALL)
    module.configure_optimizers = lambda: torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], 1e-3)
    ckpt = train_and_save(module, [clip_batch(64, 1, seed) for seed in range(2)], tmp_path / "s.ckpt")
    result = export(ckpt, "sam2", tmp_path / "sam2_image.pt")
    sam2 = build_sam2(
        result["config_file"],
        str(tmp_path / "sam2_image.pt"),
        device="cpu",
        hydra_overrides_extra=result["hydra_overrides_extra"],
        apply_postprocessing=False,
    )
    predictor = SAM2ImagePredictor(sam2)
    # SAM2ImagePredictor hard-codes the feature sizes of 1024 px inputs; these are the 64 px model's.
    predictor._bb_feat_sizes = [(16, 16), (8, 8), (4, 4)]
    image = np.random.default_rng(4).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    box = np.array([8.0, 6.0, 40.0, 30.0])
    module.eval()
    with torch.no_grad():
        predictor.set_image(image)
        _, scores, low_res = predictor.predict(box=box, multimask_output=False, return_logits=True)
        features = embed_images(module.model, predictor._transforms(image)[None])
        prompt = Prompts(
            torch.zeros(1, 0, 2),
            torch.zeros(1, 0, dtype=torch.int32),
            torch.tensor([box.tolist()]).float(),
            torch.ones(1, dtype=torch.bool),
        )
        ours, ious = decode(module.model, features, prompt)
    np.testing.assert_allclose(low_res, ours[0].numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(scores, ious[0].numpy(), atol=1e-4, rtol=1e-4)


SAM_TINY = EncoderSize(32, 2, 2, (1,))


@pytest.fixture(scope="module")
def sam_run(tmp_path_factory):
    """A tiny-encoder SAM prompt module at 1024 px (segment_anything builds 1024 px models), decoder trained 2
    steps: ``(module, checkpoint)``."""
    from samlab.models.sam.module import SAMPromptModule

    torch.manual_seed(0)
    module = SAMPromptModule(image_size=1024, encoder=SAM_TINY, freeze_image_encoder=False, lr=1e-3)
    module.configure_optimizers = lambda: torch.optim.AdamW(module.parameters(), 1e-3)
    path = train_and_save(
        module, [clip_batch(1024, 1, seed) for seed in range(2)], tmp_path_factory.mktemp("sam") / "s.ckpt"
    )
    return module.eval(), path


def test_segment_anything_export_gives_sampredictor_masks_for_a_box(sam_run, tmp_path):
    """segment_anything's own builder loads the file (strict); ``SamPredictor`` masks and scores for a box equal
    samlab's decode on the same preprocessed image (logits within 1e-4)."""
    from segment_anything import SamPredictor
    from segment_anything.build_sam import _build_sam

    module, ckpt = sam_run
    result = export(ckpt, "segment_anything", tmp_path / "sam.pth")
    assert "_build_sam(encoder_embed_dim=32" in result["load"]
    sam = _build_sam(32, 2, 2, [1], checkpoint=str(tmp_path / "sam.pth"))
    predictor = SamPredictor(sam)
    image = np.random.default_rng(1).integers(0, 255, (512, 768, 3), dtype=np.uint8)
    predictor.set_image(image)
    box = np.array([100.0, 80.0, 420.0, 300.0])
    with torch.no_grad():
        _, scores, low_res = predictor.predict(box=box, multimask_output=False, return_logits=True)
        resized = torch.as_tensor(predictor.transform.apply_image(image)).permute(2, 0, 1)[None].float()
        features = ImageFeatures(module.model.image_encoder(module.model.preprocess(resized)))
        prompt = Prompts(
            points=torch.zeros(1, 0, 2),
            point_labels=torch.zeros(1, 0, dtype=torch.int32),
            boxes=torch.as_tensor(predictor.transform.apply_boxes(box, image.shape[:2]), dtype=torch.float32),
            has_box=torch.ones(1, dtype=torch.bool),
        )
        ours, ious = decode(module.model, features, prompt, multimask=False)
    np.testing.assert_allclose(low_res, ours[0].numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(scores, ious[0].numpy(), atol=1e-5, rtol=1e-5)


def test_sam_hf_export_gives_sammodel_outputs_and_round_trips_bit_identical(sam_run, tmp_path):
    """``SamModel.from_pretrained`` loads the folder; masks and IoU scores for a box within 1e-4 of samlab's
    (transformers' port computes attention in another order); ``checkpoint:`` of the folder restores every weight
    bit-identical."""
    from transformers import SamModel, SamProcessor

    from samlab.models.sam.model import build_sam, load_sam_checkpoint

    module, ckpt = sam_run
    result = export(ckpt, "hf", tmp_path / "hf")
    hf = SamModel.from_pretrained(result["out"]).eval()
    assert SamProcessor.from_pretrained(result["out"]).image_processor.size == {"longest_edge": 1024}
    images = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 3, 1024, 1024), dtype=np.float32))
    box = torch.tensor([[[100.0, 80.0, 420.0, 300.0]]])
    with torch.no_grad():
        theirs = hf(pixel_values=images, input_boxes=box, multimask_output=False)
        prompt = Prompts(torch.zeros(1, 0, 2), torch.zeros(1, 0, dtype=torch.int32), box[0], torch.ones(1, dtype=bool))
        ours, ious = decode(module.model, embed_images(module.model, images), prompt)
    torch.testing.assert_close(theirs.pred_masks[0], ours, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(theirs.iou_scores[0], ious, atol=1e-4, rtol=1e-4)
    fresh = build_sam(image_size=1024, encoder=SAM_TINY)
    load_sam_checkpoint(fresh, result["out"])
    trained = module.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in fresh.state_dict().items())


TINY_SEGFORMER = {
    "variant": "b0",
    "config_overrides": {
        "hidden_sizes": [8, 16, 32, 64],
        "depths": [1, 1, 1, 1],
        "num_attention_heads": [1, 1, 2, 2],
        "decoder_hidden_size": 32,
    },
}


def test_directsam_export_is_a_segformer_folder_with_the_same_logits_and_loads_back(tmp_path):
    """``AutoModelForSemanticSegmentation.from_pretrained`` gives samlab's logits exactly (the same transformers
    class); the folder loads as ``DirectSAMModule(checkpoint=FOLDER)`` bit-identical and predicts at the resolution
    it was trained at (its preprocessor config's size), whatever ``image_size`` says."""
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    from samlab.data.boundaries import BoundaryBatch
    from samlab.models.directsam.module import DirectSAMModule

    torch.manual_seed(0)
    module = DirectSAMModule(image_size=64, warmup_steps=1, lr=1e-2, **TINY_SEGFORMER)
    generator = np.random.default_rng(0)
    batches = [
        BoundaryBatch(
            images=torch.from_numpy(generator.standard_normal((2, 3, 64, 64), dtype=np.float32)),
            targets=torch.from_numpy(generator.random((2, 64, 64)) > 0.8).float(),
            orig_sizes=torch.tensor([[64, 64], [64, 64]]),
            names=["a", "b"],
            image_paths=["a.jpg", "b.jpg"],
            sources=["sa1b", "sa1b"],
        )
        for _ in range(2)
    ]
    init = {k: v.clone() for k, v in module.state_dict().items()}
    ckpt = train_and_save(module, batches, tmp_path / "d.ckpt")
    assert any(not torch.equal(v, init[k]) for k, v in module.state_dict().items())
    result = export(ckpt, "hf", tmp_path / "dsam")
    hub = AutoModelForSemanticSegmentation.from_pretrained(result["out"]).eval()
    assert AutoImageProcessor.from_pretrained(result["out"]).size == {"height": 64, "width": 64}
    module.eval()
    images = batches[0].images
    with torch.no_grad():
        torch.testing.assert_close(hub(pixel_values=images).logits, module(images), rtol=0, atol=0)
    loaded = DirectSAMModule(image_size=1024, checkpoint=result["out"])
    assert loaded.image_size == 64
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in loaded.state_dict().items())
    image = torch.randint(0, 255, (3, 50, 70), dtype=torch.uint8)
    torch.testing.assert_close(loaded.predict_probabilities(image), module.predict_probabilities(image))
    with pytest.raises(DataError, match=r"no config\.json"):
        DirectSAMModule(checkpoint=str(tmp_path))


def test_masa_export_is_a_standalone_tracker_checkpoint(tmp_path):
    """The ``masa`` export rebuilds the module (settings, tracker settings, weights) without any config."""
    from samlab.models.masa.module import MASAModule

    torch.manual_seed(0)
    module = MASAModule(
        backbone="resnet18",
        image_size=64,
        channels=16,
        fusion_blocks=1,
        fc_channels=32,
        tracker={"match_score_thr": 0.3},
    )
    with torch.no_grad():  # weights other than the init, as after training
        for param in module.parameters():
            param.add_(torch.randn_like(param) * 0.01)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, tmp_path / "m.ckpt")
    result = export(tmp_path / "m.ckpt", "masa", tmp_path / "tracker.pt")
    assert "samlab track --checkpoint" in result["load"]
    loaded = load_module_export(tmp_path / "tracker.pt", MASAModule)
    assert loaded.tracker_settings == {"match_score_thr": 0.3}
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in loaded.state_dict().items())
    # samlab track: the export alone tracks as the training config with the Lightning checkpoint does.
    import json

    import yaml

    from samlab.tools.track import run_track

    frames = write_video(tmp_path / "frames", frames=3)
    boxes = [[4.0, 4.0, 30.0, 30.0], [40.0, 10.0, 70.0, 40.0]]
    detections = {"frames": [{"frame": t, "boxes": boxes, "scores": [0.9, 0.8], "labels": [0, 0]} for t in (1, 2, 3)]}
    (tmp_path / "det.json").write_text(json.dumps(detections))
    init_args = {k: v for k, v in module.hparams.items()}
    config = {"model": {"class_path": "samlab.models.masa.module.MASAModule", "init_args": init_args}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with_config = run_track(
        tmp_path / "config.yaml", frames, tmp_path / "det.json", tmp_path / "a.txt", tmp_path / "m.ckpt", progress=False
    )
    alone = run_track(None, frames, tmp_path / "det.json", tmp_path / "b.txt", tmp_path / "tracker.pt", progress=False)
    assert alone == with_config and alone["tracked"] > 0
    assert (tmp_path / "a.txt").read_text() == (tmp_path / "b.txt").read_text()
    with pytest.raises(DataError, match="holds a MASAModule"):
        from samlab.models.sam2.module import SAM2VideoModule

        load_module_export(tmp_path / "tracker.pt", SAM2VideoModule)


def test_averaged_checkpoints_export_like_any_other(sam2_run, tmp_path):
    """``samlab ckpt average`` output exports; its ``sam2`` weights are the average of the two exports' weights."""
    from samlab.tools.ckpt_average import average_checkpoints

    _, _, ckpt = sam2_run
    data = torch.load(ckpt, weights_only=False)
    data["state_dict"] = {k: v + 1 if v.is_floating_point() else v for k, v in data["state_dict"].items()}
    torch.save(data, tmp_path / "shifted.ckpt")
    average_checkpoints([ckpt, tmp_path / "shifted.ckpt"], tmp_path / "avg.ckpt", progress=False)
    average = export(tmp_path / "avg.ckpt", "sam2", tmp_path / "avg.pt")
    assert average["module"] == "SAM2VideoModule"
    weights = torch.load(tmp_path / "avg.pt", weights_only=True)["model"]
    plain = export_state(ckpt, tmp_path)
    key = "sam_mask_decoder.iou_token.weight"
    torch.testing.assert_close(weights[key], plain[key] + 0.5)


def test_bad_inputs_name_the_file(sam2_run, tmp_path):
    _, _, ckpt = sam2_run
    with pytest.raises(DataError, match="checkpoint file is missing"):
        export(tmp_path / "none.ckpt", "sam2", tmp_path / "x.pt")
    with pytest.raises(DataError, match="format 'segment_anything' needs a SAM"):
        export(ckpt, "segment_anything", tmp_path / "x.pth")
    with pytest.raises(ValueError, match="unknown export format"):
        export(ckpt, "onnx", tmp_path / "x")
    torch.save({"model": {}}, tmp_path / "plain.pt")
    with pytest.raises(DataError, match="not a Lightning checkpoint"):
        rebuild_module(tmp_path / "plain.pt")


def test_export_command_prints_the_loading_call(sam2_run, tmp_path, capsys):
    import json

    from samlab.cli import main
    from samlab.commands.export import FORMATS as COMMAND_FORMATS
    from samlab.export import FORMATS

    assert COMMAND_FORMATS == FORMATS
    _, _, ckpt = sam2_run
    assert main(["export", "--ckpt", str(ckpt), "--format", "sam2", "--out", str(tmp_path / "m.pt"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["load"].startswith("build_sam2_video_predictor('configs/sam2.1/sam2.1_hiera_t.yaml'")
    assert (tmp_path / "m.pt").is_file()

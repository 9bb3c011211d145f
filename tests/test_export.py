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
from tests.models.sam2.tiny import CLICKS, SMALL, make_batch, make_module
from torch.utils.data import DataLoader

from samlab.errors import DataError
from samlab.export import export, load_module_export, rebuild_module
from samlab.models.sam.model import EncoderSize, ImageFeatures, decode, embed_images
from samlab.models.sam.prompts import Prompts

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")


def clip_batch(size: int, num_frames: int, seed: int = 0):
    """One clip of ``num_frames`` noise frames at ``size`` px with two rectangles as objects (a ``VideoBatch``)."""
    return make_batch(f"clip{seed}", num_frames, seed=seed, size=size, orig_size=(size, size))


def train_and_save(module: LightningModule, batches: list, path: Path, adamw_lr: float | None = None) -> Path:
    """``len(batches)`` samlab training steps of ``module`` (its ``training_step``, in a Lightning ``Trainer``) on
    ``batches``, saved as a Lightning checkpoint at ``path``. ``adamw_lr``: train with AdamW at this rate instead of
    the module's optimizer and schedule (whose warm-up would barely move the weights in a few steps).

    Asserts that every step ran and that the training moved the trainable weights (so the export is not the init).
    """
    if adamw_lr is not None:
        trainable = [p for p in module.parameters() if p.requires_grad]
        module.configure_optimizers = lambda: torch.optim.AdamW(trainable, adamw_lr)
    init = {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}
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
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None, collate_fn=lambda batch: batch))
    assert trainer.global_step == len(batches)
    params = dict(module.named_parameters())
    moved = [name for name, before in init.items() if not torch.equal(params[name], before)]
    assert len(moved) > len(init) / 2, f"training moved {len(moved)} of {len(init)} trainable tensors"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def sam2_run(tmp_path_factory):
    """A SAM 2.1 video module with LoRA, trained 3 steps at 64 px: ``(module, untrained state, checkpoint)``."""
    module = make_module(lora_rank=2, prompts=CLICKS, lr=1e-3)
    init = {k: v.clone() for k, v in module.model.state_dict().items()}
    batches = [clip_batch(64, 3, seed) for seed in range(3)]
    path = train_and_save(module, batches, tmp_path_factory.mktemp("sam2") / "a.ckpt", adamw_lr=1e-2)
    return module.eval(), init, path


def write_video(folder: Path, frames: int = 4, size: tuple[int, int] = (48, 80)) -> Path:
    """A folder of ``frames`` JPEG noise frames ``size`` (h, w) px, named as SAM 2's predictor reads them."""
    folder.mkdir()
    generator = np.random.default_rng(3)
    for t in range(frames):
        Image.fromarray(generator.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{t:05d}.jpg")
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
    """``Sam2Model.from_pretrained`` loads the folder (every weight it has, the memory parts skipped) with its
    ``Sam2Processor``; masks and IoU scores for a box and for two points equal samlab's within 1e-4 (transformers
    re-implements the model: attention and positional encodings are recomputed in another order, hence not
    bit-equal); loading the folder back as ``checkpoint:`` gives every weight bit-identical, with a complete key
    report, and a ``Sam2Model``-only folder reports the memory parts, and only them, missing."""
    from transformers import Sam2Model, Sam2Processor

    from samlab.models.sam2.model import build_sam2_model, load_checkpoint

    module, _, ckpt = sam2_run
    result = export(ckpt, "hf", tmp_path / "hf")
    assert result["load"] == f"Sam2Model.from_pretrained({str(tmp_path / 'hf')!r})"
    assert result["video"] == f"Sam2VideoModel.from_pretrained({str(tmp_path / 'hf')!r})"
    hf, info = Sam2Model.from_pretrained(result["out"], output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    hf.eval()
    processor = Sam2Processor.from_pretrained(result["out"])
    assert processor.image_processor.size == {"height": 64, "width": 64}
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
    fresh = build_sam2_model("sam2.1_hiera_t", image_size=64, train=False, overrides=SMALL)
    assert load_checkpoint(fresh, tmp_path / "ref.pt").complete
    assert all(torch.equal(v, plain[k]) for k, v in fresh.state_dict().items())
    hf.save_pretrained(tmp_path / "image_only")
    for folder in (result["out"], tmp_path / "image_only"):
        fresh = build_sam2_model("sam2.1_hiera_t", image_size=64, train=False, overrides=SMALL)
        report = load_checkpoint(fresh, folder)
        loaded = fresh.state_dict()
        assert all(torch.equal(loaded[k], plain[k]) for k in loaded if k not in report.missing)
        assert not report.unexpected
        if folder == result["out"]:
            assert report.complete
        else:  # the image model has no memory parts: only those are missing
            assert report.missing
            assert not any(
                k.startswith(("image_encoder.", "sam_prompt_encoder.", "sam_mask_decoder.")) for k in report.missing
            )


def test_sam2_hf_export_tracks_in_sam2videomodel_as_the_official_predictor_and_samlab(sam2_run, tmp_path):
    """``Sam2VideoModel`` / ``Sam2VideoProcessor.from_pretrained`` load the same folder (no missing, unexpected or
    mismatched weights); their inference session tracks a 4-frame 64 px video as SAM 2's ``SAM2VideoPredictor``
    does with the ``sam2`` export of the same checkpoint, and as samlab's VOS does.

    - The processor's frames equal the predictor's (within 1e-5).
    - First-frame masks of two objects: the prompt frame's logits within 1e-4; on the tracked frames 1-3 the
      memory-conditioned image features (the memory attention's output, std 1) within 5e-3 (measured: 1.3e-3),
      the object pointers within 1e-4 (1e-5), the mask logits within 1e-3 (7e-5), the stored memories within
      bfloat16 precision (0.008 on values up to 5), the masks equal on > 99.9 % of the pixels (measured: all);
      samlab's :func:`segment_video` gives the same masks on > 99.9 % of the pixels (measured: all).
    - A click on frame 0 (one object): the logits of every frame within 1e-4 (measured: 4e-6).

    Where transformers re-implements and differs: it encodes the memory of a mask-prompted frame from the exact
    input mask, SAM 2's predictor (and samlab's VOS, which follows it) from the mask's low-resolution logits
    upsampled (here the frame-0 memories differ by up to 0.7 on values up to 5.6), hence the 1e-3 on the tracked
    frames; and it runs the layers in another float order (differences of 1e-6-1e-5 where the inputs agree).
    The memory parts weigh little in this tiny model's masks (50 % more on one memory-attention weight moves the
    tracked logits by 1e-4-0.1), which is why the memory attention's output and the memories are compared too.
    """
    from sam2.build_sam import build_sam2_video_predictor
    from transformers import Sam2VideoModel, Sam2VideoProcessor

    from samlab.models.sam2.vos import segment_video

    module, _, ckpt = sam2_run
    result = export(ckpt, "hf", tmp_path / "hf")
    model, info = Sam2VideoModel.from_pretrained(result["out"], output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    model.eval()
    processor = Sam2VideoProcessor.from_pretrained(result["out"])
    official_export = export(ckpt, "sam2", tmp_path / "sam2.pt")
    predictor = build_sam2_video_predictor(
        official_export["config_file"],
        official_export["out"],
        device="cpu",
        hydra_overrides_extra=official_export["hydra_overrides_extra"],
        apply_postprocessing=False,
    )
    video = write_video(tmp_path / "video", size=(64, 64))
    frames = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in sorted(video.iterdir())])
    state = predictor.init_state(str(video))
    session = processor.init_video_session(video=frames, inference_device="cpu")
    torch.testing.assert_close(
        torch.stack([session.get_frame(t) for t in range(4)]), state["images"], atol=1e-5, rtol=0
    )
    # The output of each library's memory attention, in call order: tracked frames 1-3, objects one by one.
    attended: dict[str, list[torch.Tensor]] = {"hf": [], "official": []}
    model.memory_attention.register_forward_hook(lambda m, i, out: attended["hf"].append(out.reshape(-1, 256)))
    predictor.memory_attention.register_forward_hook(lambda m, i, out: attended["official"].append(out[:, 0]))

    def track(session) -> dict[int, torch.Tensor]:
        """``{frame: [O, 64, 64] logits}`` of transformers' propagation of ``session``, at the video size."""
        out = {}
        with torch.no_grad():
            model(inference_session=session, frame_idx=0)  # the prompt frame first, as transformers' docs do
            for output in model.propagate_in_video_iterator(session):
                (logits,) = processor.post_process_masks([output.pred_masks], [[64, 64]], binarize=False)
                out[output.frame_idx] = logits[:, 0]
        return out

    gt = torch.zeros(4, 2, 64, 64, dtype=torch.bool)
    gt[0, 0, 8:30, 10:40] = True
    gt[0, 1, 36:60, 20:50] = True
    processor.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=[1, 2], input_masks=[gt[0, 0], gt[0, 1]])
    theirs = track(session)
    with torch.no_grad():
        for o in range(2):
            predictor.add_new_mask(state, frame_idx=0, obj_id=o + 1, mask=gt[0, o])
        official = {t: logits[:, 0] for t, _, logits in predictor.propagate_in_video(state)}
        ours = segment_video(module.model, state["images"], gt, non_overlapping=False)
    assert len(attended["hf"]) == len(attended["official"]) == 6
    for hf_features, official_features in zip(attended["hf"], attended["official"], strict=True):
        torch.testing.assert_close(hf_features, official_features, atol=5e-3, rtol=0)
    # The prompt frame: the input mask as the output (at low resolution, upsampled), alike in both libraries.
    torch.testing.assert_close(theirs[0], official[0], atol=1e-4, rtol=1e-4)
    for t in range(1, 4):
        torch.testing.assert_close(theirs[t], official[t], atol=1e-3, rtol=1e-3, msg=f"frame {t}")
        assert ((theirs[t] > 0) != (official[t] > 0)).float().mean() < 1e-3, t
        assert ((theirs[t] > 0) != ours[t]).float().mean() < 1e-3, t
        for o in range(2):
            hf_out = session.output_dict_per_obj[o]["non_cond_frame_outputs"][t]
            official_out = state["output_dict_per_obj"][o]["non_cond_frame_outputs"][t]
            torch.testing.assert_close(hf_out["object_pointer"][0], official_out["obj_ptr"], atol=1e-4, rtol=1e-4)
            memory = official_out["maskmem_features"]  # [1, C, h, w] bfloat16; transformers stores [h * w, 1, C]
            hf_memory = hf_out["maskmem_features"].permute(1, 2, 0).reshape(memory.shape)
            torch.testing.assert_close(hf_memory.float(), memory.float(), atol=2e-2, rtol=1e-2)
    assert any(ours[t].any() for t in range(1, 4))

    # A click (x, y) = (30, 20) on frame 0.
    predictor.reset_state(state)
    session = processor.init_video_session(video=frames, inference_device="cpu")
    processor.add_inputs_to_inference_session(
        session, frame_idx=0, obj_ids=[1], input_points=[[[[30.0, 20.0]]]], input_labels=[[[1]]]
    )
    theirs = track(session)
    with torch.no_grad():
        predictor.add_new_points_or_box(
            state, frame_idx=0, obj_id=1, points=np.array([[30.0, 20.0]]), labels=np.array([1])
        )
        official = {t: logits[:, 0] for t, _, logits in predictor.propagate_in_video(state)}
    for t in range(4):
        torch.testing.assert_close(theirs[t], official[t], atol=1e-4, rtol=1e-4, msg=f"frame {t}")
    assert (official[0] > 0).any()


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
    module = SAMPromptModule(variant="sam2.1_hiera_t", backend="sam2", image_size=64, model_overrides=SMALL)
    ckpt = train_and_save(module, [clip_batch(64, 1, seed) for seed in range(2)], tmp_path / "s.ckpt", adamw_lr=1e-3)
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
    """A tiny-encoder SAM prompt module at 1024 px (segment_anything builds 1024 px models), trained 2 steps with
    its image encoder: ``(module, checkpoint)``."""
    from samlab.models.sam.module import SAMPromptModule

    torch.manual_seed(0)
    module = SAMPromptModule(image_size=1024, encoder=SAM_TINY, freeze_image_encoder=False, lr=1e-3)
    batches = [clip_batch(1024, 1, seed) for seed in range(2)]
    path = train_and_save(module, batches, tmp_path_factory.mktemp("sam") / "s.ckpt", adamw_lr=1e-3)
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
    ckpt = train_and_save(module, batches, tmp_path / "d.ckpt")
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


def masa_pairs(seed: int):
    """A :class:`PairBatch` of two 64 px noise images, each seen twice (the reference view: the key view plus noise,
    boxes shifted 2 px and listed in reverse order) with three instances."""
    from samlab.data.pairs.batch import PairBatch

    generator = torch.Generator().manual_seed(seed)
    key = torch.randn(2, 3, 64, 64, generator=generator)
    ref = key + 0.1 * torch.randn(2, 3, 64, 64, generator=generator)
    boxes = torch.tensor([[4.0, 4.0, 30.0, 30.0], [34.0, 8.0, 60.0, 40.0], [10.0, 36.0, 40.0, 60.0]])
    ids = torch.tensor([1, 2, 3])
    return PairBatch(key, ref, [boxes] * 2, [boxes.flip(0) + 2] * 2, [ids] * 2, [ids.flip(0)] * 2, names=["a", "b"])


def test_masa_export_is_a_standalone_tracker_checkpoint(tmp_path):
    """A tiny MASA module trained 3 steps (its own SGD, warm-up of one step) exports to ``masa``; the export alone
    rebuilds the module (settings, tracker settings, weights bit-identical) with the same instance embeddings, and
    ``samlab track --checkpoint EXPORT`` without a config writes the tracks the training config with the Lightning
    checkpoint gives."""
    import json

    import yaml

    from samlab.cli import main
    from samlab.models.masa.module import MASAModule
    from samlab.tools.track import run_track

    torch.manual_seed(0)
    module = MASAModule(
        backbone="resnet18",
        image_size=64,
        channels=16,
        fusion_blocks=1,
        fc_channels=32,
        roi_samples=64,
        lr=0.02,
        warmup_iters=1,
        tracker={"match_score_thr": 0.3},
    )
    ckpt = train_and_save(module, [masa_pairs(seed) for seed in range(3)], tmp_path / "m.ckpt")
    result = export(ckpt, "masa", tmp_path / "tracker.pt")
    assert "samlab track --checkpoint" in result["load"]
    loaded = load_module_export(tmp_path / "tracker.pt", MASAModule)
    assert loaded.tracker_settings == {"match_score_thr": 0.3}
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in loaded.state_dict().items())
    module.eval()
    batch = masa_pairs(7)
    with torch.no_grad():
        embeds = [
            m.model.embed(m.model.features(batch.key_images), batch.key_boxes, (64, 64)) for m in (module, loaded)
        ]
    torch.testing.assert_close(embeds[1], embeds[0], rtol=0, atol=0)

    frames = write_video(tmp_path / "frames", frames=3)
    boxes = [[4.0, 4.0, 30.0, 30.0], [40.0, 10.0, 70.0, 40.0]]
    detections = {"frames": [{"frame": t, "boxes": boxes, "scores": [0.9, 0.8], "labels": [0, 0]} for t in (1, 2, 3)]}
    (tmp_path / "det.json").write_text(json.dumps(detections))
    config = {"model": {"class_path": "samlab.models.masa.module.MASAModule", "init_args": dict(module.hparams)}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with_config = run_track(
        tmp_path / "config.yaml", frames, tmp_path / "det.json", tmp_path / "a.txt", ckpt, progress=False
    )
    command = ["track", "--checkpoint", str(tmp_path / "tracker.pt"), "--frames", str(frames)]
    assert main([*command, "--detections", str(tmp_path / "det.json"), "--out", str(tmp_path / "b.txt")]) == 0
    assert with_config["tracked"] > 0
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

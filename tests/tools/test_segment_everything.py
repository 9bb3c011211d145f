"""Segment-everything with tiny randomly initialised SAM / SAM 2 models: SA-1B JSONs that read back, skip on rerun."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from samlab.data.formats.sa1b import SA1BReader
from samlab.errors import DataError
from samlab.masks import rle_area
from samlab.tools.sa1b_to_coco import sa1b_to_coco
from samlab.tools.segment_everything import (
    ANNOTATION_ID_STRIDE,
    build_mask_generator,
    default_device,
    list_images,
    segment_everything,
)

SIZE = 64
# Random weights give low quality scores: keep every mask so that the output is not empty.
KEEP_ALL = {"points_per_side": 4, "points_per_batch": 8, "pred_iou_thresh": -10.0, "stability_score_thresh": 0.0}


def tiny_sam() -> Sam:
    torch.manual_seed(0)
    dim, grid = 32, SIZE // 16
    encoder = ImageEncoderViT(
        img_size=SIZE,
        patch_size=16,
        embed_dim=dim,
        depth=1,
        num_heads=2,
        out_chans=dim,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=0,
        global_attn_indexes=(0,),
    )
    prompt = PromptEncoder(
        embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(SIZE, SIZE), mask_in_chans=4
    )
    transformer = TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2)
    decoder = MaskDecoder(transformer_dim=dim, transformer=transformer, iou_head_depth=1, iou_head_hidden_dim=16)
    return Sam(encoder, prompt, decoder).eval()


@pytest.fixture
def generator():
    return build_mask_generator("segment_anything", model=tiny_sam(), device="cpu", **KEEP_ALL)


def test_writes_sa1b_jsons_that_read_back(coco_root: Path, tmp_path: Path, generator) -> None:
    images = list_images([coco_root])
    assert len(images) == 4
    out = tmp_path / "out"
    summary = segment_everything(images[:2], out, generator, progress=False)
    assert summary.written == 2 and summary.existing == 0 and summary.masks > 0
    reader = SA1BReader(out)
    assert reader.names == [p.stem for p in images[:2]]
    for image_id, item in enumerate(reader, start=1):
        info = item.image_info()
        assert info == {"image_id": image_id, "width": 64, "height": 48, "file_name": item.image_path.name}
        anns = item.annotations()
        assert [a["id"] for a in anns] == [image_id * ANNOTATION_ID_STRIDE + k for k in range(len(anns))]
        masks = item.masks(0)
        decoded = masks.decode(masks.ids())
        assert decoded.shape == (len(anns), 48, 64)
        for ann, mask in zip(anns, decoded):
            assert ann["area"] == rle_area(ann["segmentation"]) == int(mask.sum())
            assert set(ann) >= {"bbox", "predicted_iou", "stability_score", "point_coords", "crop_box"}
            assert isinstance(ann["segmentation"]["counts"], str)
        assert item.image_path.read_bytes() == images[image_id - 1].read_bytes()
    # The folder feeds MASA's converter directly.
    (tmp_path / "list.json").write_text(json.dumps([p.name for p in images[:2]]))
    coco = sa1b_to_coco(tmp_path / "list.json", out, tmp_path / "coco", workers=0, progress=False)
    assert (coco.images, coco.annotations) == (2, summary.masks)


def test_rerun_skips_images_already_done(coco_root: Path, tmp_path: Path, generator) -> None:
    images = list_images([coco_root])
    out = tmp_path / "out"
    segment_everything(images[:1], out, generator, progress=False)
    first = (out / f"{images[0].stem}.json").read_bytes()
    calls = []
    original = generator.generate
    generator.generate = lambda image: calls.append(image.shape) or original(image)
    summary = segment_everything(images[:2], out, generator, progress=False)
    assert (summary.written, summary.existing) == (1, 1) and calls == [(48, 64, 3)]
    assert (out / f"{images[0].stem}.json").read_bytes() == first
    assert not list(out.glob("*.tmp"))


def test_bad_images(tmp_path: Path, generator) -> None:
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg: truncated JPEG"):
        segment_everything([folder], tmp_path / "out", generator, progress=False)
    summary = segment_everything([folder], tmp_path / "out", generator, skip_bad=True, progress=False)
    assert summary.written == 0 and len(summary.failed) == 1 and "broken.jpg" in summary.failed[0]
    (folder / "sub").mkdir()
    (folder / "sub" / "broken.png").write_bytes(b"x")
    with pytest.raises(DataError, match="same file stem"):
        list_images([folder])
    with pytest.raises(DataError, match="does not exist"):
        list_images([tmp_path / "missing"])


def test_sam2_backend_with_a_tiny_model(coco_root: Path, tmp_path: Path) -> None:
    from samlab.models.sam2.model import build_sam2_model

    torch.manual_seed(0)
    overrides = (
        "++model.image_encoder.trunk.embed_dim=32",
        "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
        "++model.memory_attention.num_layers=1",
    )
    model = build_sam2_model("sam2.1_hiera_t", image_size=SIZE, train=False, overrides=overrides)
    generator = build_mask_generator("sam2", model=model, device="cpu", **KEEP_ALL)
    image = list_images([coco_root])[0]
    summary = segment_everything([image], tmp_path / "out", generator, progress=False)
    assert summary.written == 1 and summary.masks > 0
    item = SA1BReader(tmp_path / "out")[0]
    masks = item.masks(0)
    assert masks.decode(masks.ids()).shape[1:] == (48, 64)


def test_builder_checks() -> None:
    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown backend"):
        build_mask_generator("mmdet", model=tiny_sam())
    with pytest.raises(DataError, match="checkpoint file does not exist"):
        build_mask_generator("segment_anything", checkpoint="/nonexistent/sam.pth", model_type="vit_b")
    with pytest.raises(ValueError, match="unknown SAM model type"):
        build_mask_generator("segment_anything", checkpoint="x.pth", model_type="vit_x")
    assert np.isclose(
        build_mask_generator(
            "segment_anything", model=tiny_sam(), device="cpu", pred_iou_thresh=0.5, points_per_side=None
        ).pred_iou_thresh,
        0.5,
    )


def test_cli_needs_an_existing_checkpoint(coco_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from samlab.cli import main

    argv = ["data", "segment-everything", str(coco_root), "--checkpoint", str(tmp_path / "sam.pth")]
    assert main([*argv, "--out", str(tmp_path / "out"), "--model-type", "vit_b"]) == 1
    assert "sam.pth: checkpoint file does not exist" in capsys.readouterr().err

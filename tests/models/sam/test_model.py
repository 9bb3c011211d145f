import pytest
import torch
from segment_anything.build_sam import build_sam_vit_b

from samlab.errors import DataError
from samlab.models.sam.model import (
    VARIANTS,
    EncoderSize,
    build_sam,
    decode,
    embed_images,
    freeze,
    load_sam_checkpoint,
)
from samlab.models.sam.prompts import evaluation_prompts, mask_boxes

TINY = EncoderSize(32, 2, 2, (1,))


def test_variant_sizes_are_segment_anythings():
    official = build_sam_vit_b()
    ours = build_sam("vit_b")
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in official.state_dict().items()}
    assert VARIANTS["vit_h"].global_attn_indexes == (7, 15, 23, 31)


def test_decode_shapes_and_multimask():
    sam = build_sam(image_size=64, encoder=TINY).eval()
    features = embed_images(sam, torch.randn(1, 3, 64, 64))
    assert features.embedding.shape == (1, 256, 4, 4) and features.high_res == []
    masks = torch.zeros(3, 64, 64, dtype=torch.bool)
    masks[:, 10:30, 20:40] = True
    logits, iou = decode(sam, features, evaluation_prompts("box", mask_boxes(masks), None))
    assert logits.shape == (3, 1, 16, 16) and iou.shape == (3, 1)
    logits, iou = decode(sam, features, evaluation_prompts("mask_center", None, masks), multimask=True)
    assert logits.shape == (3, 3, 16, 16)
    with pytest.raises(ValueError, match="multiple of 16"):
        build_sam(image_size=72)


def test_checkpoint_round_trip_at_another_size_and_errors(tmp_path):
    source = build_sam(image_size=64, encoder=TINY)
    path = tmp_path / "sam.pth"
    torch.save(source.state_dict(), path)
    same = build_sam(image_size=64, encoder=TINY, checkpoint=path)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), same.state_dict().values()))
    larger = build_sam(image_size=128, encoder=TINY, checkpoint=path)  # position tables interpolated
    assert larger.image_encoder.pos_embed.shape == (1, 8, 8, 32)
    assert torch.equal(larger.mask_decoder.iou_token.weight, source.mask_decoder.iou_token.weight)
    lightning = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, lightning)
    load_sam_checkpoint(build_sam(image_size=64, encoder=TINY), lightning)
    with pytest.raises(DataError, match="missing keys"):
        load_sam_checkpoint(build_sam(image_size=64, encoder=EncoderSize(32, 3, 2, (1,))), path)
    with pytest.raises(DataError, match="missing"):
        load_sam_checkpoint(source, tmp_path / "nope.pth")


def test_freeze_parts():
    sam = build_sam(image_size=64, encoder=TINY)
    freeze(sam, image_encoder=True, mask_decoder=True)
    assert not any(p.requires_grad for p in sam.image_encoder.parameters())
    assert not any(p.requires_grad for p in sam.mask_decoder.parameters())
    assert all(p.requires_grad for p in sam.prompt_encoder.parameters())

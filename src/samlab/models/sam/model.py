"""Building segment_anything's ``Sam`` at any size, loading checkpoints, freezing parts, and one prompted decode.

Plain torch around the ``segment_anything`` package: the package's ``build_sam_vit_*`` take only a checkpoint path
and a 1024 px input, so :func:`build_sam` assembles the same modules with the variant's encoder sizes (or smaller ones
for tests) at any input size that is a multiple of 16. SAM 2's image path (a ``SAM2Base`` from
:func:`samlab.models.sam2.model.build_sam2_model`) is served by the same :func:`embed_images` and :func:`decode`, the
way ``SAM2ImagePredictor`` calls it, so the Lightning module handles both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from os import PathLike

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

from samlab.errors import DataError
from samlab.models.sam.prompts import Prompts
from samlab.models.sam2.model import freeze as freeze_sam2
from samlab.models.sam2.model import read_weights

PATCH_SIZE = 16
PROMPT_EMBED_DIM = 256
# SAM's pixel statistics in 0..255 units: ImageNet's mean/std times 255.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class EncoderSize:
    """Sizes of SAM's ViT image encoder: width, blocks, heads and the blocks with global attention."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]


VARIANTS: dict[str, EncoderSize] = {
    "vit_b": EncoderSize(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": EncoderSize(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": EncoderSize(1280, 32, 16, (7, 15, 23, 31)),
}
"""The released SAM image encoders (segment_anything's ``build_sam_vit_b|l|h``)."""

MODEL_PARTS = ("image_encoder", "prompt_encoder", "mask_decoder")


def build_sam(
    variant: str = "vit_b",
    image_size: int = 1024,
    checkpoint: str | PathLike[str] | None = None,
    encoder: EncoderSize | None = None,
) -> Sam:
    """A segment_anything ``Sam`` with the modules of ``variant`` (``vit_b``, ``vit_l``, ``vit_h``) at ``image_size``.

    ``image_size``: square input side, a multiple of 16 (the ViT patch). ``encoder``: other encoder sizes instead
    of the variant's (tests use a tiny ViT). ``checkpoint``: an official SAM ``.pth`` or a samlab Lightning
    checkpoint, loaded with :func:`load_sam_checkpoint`. The prompt encoder and mask decoder are SAM's (256-d). The
    model is on CPU, in train mode.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown SAM variant '{variant}'; expected one of {sorted(VARIANTS)}")
    if image_size <= 0 or image_size % PATCH_SIZE:
        raise ValueError(f"image_size must be a positive multiple of {PATCH_SIZE}, got {image_size}")
    size = encoder or VARIANTS[variant]
    if any(not 0 <= i < size.depth for i in size.global_attn_indexes):
        raise ValueError(f"global_attn_indexes {size.global_attn_indexes} must lie in [0, depth={size.depth})")
    grid = image_size // PATCH_SIZE
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=size.depth,
            embed_dim=size.embed_dim,
            img_size=image_size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=size.num_heads,
            patch_size=PATCH_SIZE,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(size.global_attn_indexes),
            window_size=14,
            out_chans=PROMPT_EMBED_DIM,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_EMBED_DIM,
            image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8),
            transformer_dim=PROMPT_EMBED_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    if checkpoint is not None:
        load_sam_checkpoint(sam, checkpoint)
    return sam.train()


def _resized(name: str, value: torch.Tensor, target: torch.Size) -> torch.Tensor:
    """A checkpoint's position tables at another input size: ``pos_embed`` ``[1, h, w, C]`` bicubic on its grid,
    relative position tables ``[2s - 1, C]`` linearly along their length (what ViTDet does at run time)."""
    if name.endswith("pos_embed"):
        grid = value.permute(0, 3, 1, 2).float()
        grid = F.interpolate(grid, size=tuple(target[1:3]), mode="bicubic", align_corners=False)
        return grid.permute(0, 2, 3, 1).to(value.dtype)
    table = value.float().T[None]  # [1, C, L]
    table = F.interpolate(table, size=target[0], mode="linear", align_corners=False)
    return table[0].T.to(value.dtype)


def load_sam_checkpoint(sam: Sam, path: str | PathLike[str]) -> None:
    """Load an official SAM checkpoint (a bare state dict), a samlab Lightning checkpoint or a Hugging Face
    ``SamModel`` folder into ``sam``, strictly.

    At an input size other than the checkpoint's, the absolute and the global-attention relative position tables are
    interpolated. Raises :class:`DataError` naming the file when it is not a checkpoint, misses or adds parameters
    (another variant), or a tensor does not fit.
    """
    state = read_weights(path, sam)
    own = sam.state_dict()
    for name, value in state.items():
        if name in own and value.shape != own[name].shape and ("pos_embed" in name or ".rel_pos_" in name):
            state[name] = _resized(name, value, own[name].shape)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise DataError(
            path,
            f"checkpoint does not fit this SAM: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]}); check the variant",
        )
    try:
        sam.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise DataError(path, f"checkpoint does not fit this SAM: {err}") from None


def freeze(
    sam: nn.Module, image_encoder: bool = False, prompt_encoder: bool = False, mask_decoder: bool = False
) -> None:
    """Stop gradients of the chosen parts of ``sam`` (a ``Sam`` or a SAM 2 model; ``requires_grad = False``)."""
    if not isinstance(sam, Sam):
        freeze_sam2(sam, image_encoder=image_encoder, prompt_encoder=prompt_encoder, mask_decoder=mask_decoder)
        return
    for part, frozen in zip(MODEL_PARTS, (image_encoder, prompt_encoder, mask_decoder), strict=True):
        if frozen:
            getattr(sam, part).requires_grad_(False)


@dataclass
class ImageFeatures:
    """What the mask decoder needs of a batch of images: ``embedding [B, 256, S/16, S/16]`` and, for SAM 2, its
    higher-resolution feature maps (``[B, 32, S/4, S/4]`` and ``[B, 64, S/8, S/8]``; empty for SAM)."""

    embedding: torch.Tensor
    high_res: list[torch.Tensor] = field(default_factory=list)

    def image(self, b: int) -> ImageFeatures:
        """The features of image ``b`` alone (batch of one)."""
        return ImageFeatures(self.embedding[b : b + 1], [f[b : b + 1] for f in self.high_res])


def embed_images(model: nn.Module, images: torch.Tensor) -> ImageFeatures:
    """Image features of ``[B, 3, S, S]`` normalised images for a ``Sam`` or a SAM 2 model.

    SAM 2 as its image predictor: backbone features, ``no_mem_embed`` added to the lowest-resolution map (what SAM 2
    learnt for frames without memory), maps reshaped to ``[B, C, h, w]``.
    """
    if isinstance(model, Sam):
        return ImageFeatures(model.image_encoder(images))
    backbone = model.forward_image(images)
    _, vision_feats, _, feat_sizes = model._prepare_backbone_features(backbone)
    if model.directly_add_no_mem_embed:
        vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
    maps = [
        f.permute(1, 2, 0).reshape(len(images), -1, *size) for f, size in zip(vision_feats, feat_sizes, strict=True)
    ]
    return ImageFeatures(maps[-1], maps[:-1])


def decode(
    model: nn.Module,
    features: ImageFeatures,
    prompts: Prompts,
    mask_inputs: torch.Tensor | None = None,
    multimask: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One prompt-encoder + mask-decoder pass for ``N`` objects of one image (a ``Sam`` or a SAM 2 model).

    Args:
        model: the model.
        features: the image's :class:`ImageFeatures` (batch of one, see :meth:`ImageFeatures.image`).
        prompts: ``N`` objects' prompts in input pixels; either all or none of them have a box.
        mask_inputs: ``[N, 1, S/4, S/4]`` previous low-resolution logits (mask prompt), or None.
        multimask: the three-mask output (for ambiguous single clicks) instead of one mask.

    Returns:
        Low-resolution mask logits ``[N, M, S/4, S/4]`` and predicted IoUs ``[N, M]``, ``M`` = 3 or 1.
    """
    has_box = bool(prompts.has_box.all())
    if not has_box and bool(prompts.has_box.any()):
        raise ValueError("decode needs objects that all have a box or none: split them first (Prompts.groups)")
    points = None
    if prompts.points.shape[1] > 0:
        points = (prompts.points, prompts.point_labels)
    boxes = prompts.boxes if has_box else None
    if points is None and boxes is None:
        raise ValueError("decode got objects without any point or box")
    if isinstance(model, Sam):
        sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=mask_inputs)
        return model.mask_decoder(
            image_embeddings=features.embedding,
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
    if boxes is not None:
        # SAM 2 takes a box as its two corners, labelled 2 and 3, ahead of the clicks.
        corners = boxes.reshape(-1, 2, 2)
        corner_labels = torch.tensor([[2, 3]], dtype=torch.int32, device=boxes.device).expand(len(boxes), 2)
        points = (
            (torch.cat([corners, points[0]], dim=1), torch.cat([corner_labels, points[1]], dim=1))
            if points is not None
            else (corners, corner_labels)
        )
    sparse, dense = model.sam_prompt_encoder(points=points, boxes=None, masks=mask_inputs)
    low_res, iou_pred, _, _ = model.sam_mask_decoder(
        image_embeddings=features.embedding,
        image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        repeat_image=True,
        high_res_features=features.high_res,
    )
    return low_res, iou_pred

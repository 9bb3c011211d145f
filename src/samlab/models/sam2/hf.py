"""SAM 2's ``SAM2Base`` <-> Hugging Face transformers' ``Sam2Model`` / ``Sam2VideoModel``: key names, configs,
folders.

The weights are the same tensors under other names (transformers' SAM 2 port), except the prompt encoder's four
point embeddings, which transformers stacks into one ``[4, 256]`` table. :func:`to_hf_state_dict` renames an
official state dict and :func:`from_hf_state_dict` inverts it for the keys of a given model, so a round trip leaves
every weight bit-identical.
"""

from __future__ import annotations

import re
from os import PathLike
from pathlib import Path

import torch
from torch import nn

# Official name part -> transformers name part, applied in this order (the names of transformers' SAM 2 port).
RENAMES: tuple[tuple[str, str], ...] = (
    ("mask_decoder.output_upscaling.0.", "mask_decoder.upscale_conv1."),
    ("mask_decoder.output_upscaling.1.", "mask_decoder.upscale_layer_norm."),
    ("mask_decoder.output_upscaling.3.", "mask_decoder.upscale_conv2."),
    ("mask_downscaling.0.", "mask_embed.conv1."),
    ("mask_downscaling.1.", "mask_embed.layer_norm1."),
    ("mask_downscaling.3.", "mask_embed.conv2."),
    ("mask_downscaling.4.", "mask_embed.layer_norm2."),
    ("mask_downscaling.6.", "mask_embed.conv3."),
    ("dwconv", "depthwise_conv"),
    ("pwconv", "pointwise_conv"),
    ("fuser", "memory_fuser"),
    ("point_embeddings", "point_embed"),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("obj_ptr_tpos_proj", "temporal_positional_encoding_projection_layer"),
    ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),
    ("sam_prompt_encoder", "prompt_encoder"),
    ("sam_mask_decoder", "mask_decoder"),
    ("maskmem_tpos_enc", "memory_temporal_positional_encoding"),
    ("gamma", "scale"),
    ("image_encoder.neck", "vision_encoder.neck"),
    ("image_encoder", "vision_encoder.backbone"),
    ("pix_feat_proj", "feature_projection"),
    ("patch_embed.proj", "patch_embed.projection"),
    ("no_mem_embed", "no_memory_embedding"),
    ("no_mem_pos_enc", "no_memory_positional_encoding"),
    ("obj_ptr", "object_pointer"),
    (".norm", ".layer_norm"),
    ("trunk.", ""),
    ("out_proj", "o_proj"),
)
# Two- and three-layer MLPs: transformers names their linears proj_in (layers.0 of mlp heads), layers.0 (the middle
# one of three) and proj_out (the last).
_TWO_LAYER = re.compile(
    r"^(vision_encoder\.backbone\.blocks\.\d+\.mlp|mask_decoder\.transformer\.layers\.\d+\.mlp)"
    r"\.layers\.(\d)\."
)
_THREE_LAYER = re.compile(
    r"^(mask_decoder\.pred_obj_score_head|mask_decoder\.iou_prediction_head|mask_decoder\.output_hypernetworks_mlps"
    r"\.\d+|object_pointer_proj)\.layers\.(\d)\."
)
_NECK_CONV = re.compile(r"^(vision_encoder\.neck\.convs\.\d+)\.conv\.")
# The memory encoder's mask downsampler: official Sequential (conv, norm, act) x n + final conv; transformers
# names them layers.i.conv / layers.i.layer_norm and final_conv.
_DOWNSAMPLER = re.compile(r"^memory_encoder\.mask_downsampler\.encoder\.(\d+)\.")
POINT_EMBEDS = tuple(f"sam_prompt_encoder.point_embeddings.{i}.weight" for i in range(4))
POINT_TABLE = "prompt_encoder.point_embed.weight"
SHARED_EMBEDDING = "shared_image_embedding.positional_embedding"
PROMPT_GAUSSIAN = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"


def _downsampler_name(index: int, final: int) -> str:
    if index == final:
        return "final_conv"
    return f"layers.{index // 3}.{'conv' if index % 3 == 0 else 'layer_norm'}"


def final_downsampler_index(keys: list[str]) -> int:
    """Index of the mask downsampler's last conv among official ``keys`` (12 in the released models)."""
    found = [int(m.group(1)) for key in keys if (m := _DOWNSAMPLER.match(key))]
    return max(found, default=-1)


def hf_key(key: str, final_downsampler: int = 12) -> str:
    """The transformers name of official ``SAM2Base`` state-dict key ``key`` (the point embeddings excepted, see
    :data:`POINT_TABLE`); ``final_downsampler``: see :func:`final_downsampler_index`."""
    key = _DOWNSAMPLER.sub(
        lambda m: f"memory_encoder.mask_downsampler.{_downsampler_name(int(m.group(1)), final_downsampler)}.", key
    )
    for old, new in RENAMES:
        key = key.replace(old, new)
    key = _TWO_LAYER.sub(lambda m: f"{m.group(1)}.{('proj_in', 'proj_out')[int(m.group(2))]}.", key)
    key = _THREE_LAYER.sub(lambda m: f"{m.group(1)}.{('proj_in', 'layers.0', 'proj_out')[int(m.group(2))]}.", key)
    key = _NECK_CONV.sub(lambda m: f"{m.group(1)}.", key)
    if key.startswith("memory_encoder.o_proj."):
        key = key.replace(".o_proj.", ".projection.")
    return key


def to_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official ``SAM2Base`` state dict under ``Sam2VideoModel``'s names (a superset of ``Sam2Model``'s)."""
    final = final_downsampler_index(list(state))
    out = {hf_key(key, final): value for key, value in state.items() if key not in POINT_EMBEDS}
    out[POINT_TABLE] = torch.cat([state[key] for key in POINT_EMBEDS])
    out[SHARED_EMBEDDING] = state[PROMPT_GAUSSIAN]
    return out


def from_hf_state_dict(state: dict[str, torch.Tensor], keys: list[str]) -> dict[str, torch.Tensor]:
    """The official-key state dict of a ``Sam2Model`` / ``Sam2VideoModel`` state dict for official ``keys`` (a
    ``SAM2Base``'s state-dict keys); keys the HF state dict lacks are left out (reported missing by the loader), HF
    keys no official key maps to come back under their own names (reported unexpected)."""
    used = {SHARED_EMBEDDING}
    out = {}
    final = final_downsampler_index(keys)
    for key in keys:
        if key in POINT_EMBEDS:
            if POINT_TABLE in state:
                out[key] = state[POINT_TABLE][POINT_EMBEDS.index(key)][None].clone()
                used.add(POINT_TABLE)
            continue
        name = hf_key(key, final)
        if key == PROMPT_GAUSSIAN and name not in state:  # tied to the shared copy, which safetensors keeps alone
            name = SHARED_EMBEDDING
        if name in state:
            out[key] = state[name]
            used.add(name)
    out.update({key: value for key, value in state.items() if key not in used})
    return out


def hf_configs(model: nn.Module):
    """transformers' ``(Sam2Config, Sam2VideoConfig)`` of ``model`` (a ``SAM2Base``)."""
    from transformers import Sam2Config, Sam2HieraDetConfig, Sam2VideoConfig, Sam2VisionConfig

    trunk = model.image_encoder.trunk
    neck = model.image_encoder.neck
    stage_ends = trunk.stage_ends
    blocks_per_stage = [end - start for start, end in zip([-1, *stage_ends[:-1]], stage_ends, strict=True)]
    first_blocks = [0, *(end + 1 for end in stage_ends[:-1])]
    size = model.image_size
    backbone = Sam2HieraDetConfig(
        hidden_size=trunk.blocks[0].dim,
        num_attention_heads=trunk.blocks[0].attn.num_heads,
        image_size=[size, size],
        blocks_per_stage=blocks_per_stage,
        embed_dim_per_stage=[trunk.blocks[i].dim_out for i in first_blocks],
        num_attention_heads_per_stage=[trunk.blocks[i].attn.num_heads for i in first_blocks],
        window_size_per_stage=list(trunk.window_spec),
        global_attention_blocks=list(trunk.global_att_blocks),
        window_positional_embedding_background_size=list(trunk.window_pos_embed_bkg_spatial_size),
        num_query_pool_stages=len(trunk.q_pool_blocks),
        query_stride=list(trunk.q_stride),
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=list(neck.backbone_channel_list),
        backbone_feature_sizes=[[size // 4, size // 4], [size // 8, size // 8], [size // 16, size // 16]],
        fpn_hidden_size=neck.d_model,
        fpn_top_down_levels=list(neck.fpn_top_down_levels),
    )
    decoder = model.sam_mask_decoder
    sam21 = hasattr(model, "obj_ptr_tpos_proj") and isinstance(model.obj_ptr_tpos_proj, nn.Linear)
    common = {
        "vision_config": vision,
        "prompt_encoder_config": {"image_size": size, "hidden_size": model.sam_prompt_embed_dim},
        "mask_decoder_config": {
            "hidden_size": model.sam_prompt_embed_dim,
            # The model's own single-mask choice (transformers defaults to SAM 2's inference post-processing).
            "dynamic_multimask_via_stability": decoder.dynamic_multimask_via_stability,
            "dynamic_multimask_stability_delta": decoder.dynamic_multimask_stability_delta,
            "dynamic_multimask_stability_thresh": decoder.dynamic_multimask_stability_thresh,
        },
    }
    image = Sam2Config(**common)
    attention = model.memory_attention
    video = Sam2VideoConfig(
        **common,
        image_size=size,
        num_maskmem=model.num_maskmem,
        enable_occlusion_spatial_embedding=model.no_obj_embed_spatial is not None,
        enable_temporal_pos_encoding_for_object_pointers=sam21,
        max_object_pointers_in_encoder=model.max_obj_ptrs_in_encoder,
        memory_attention_num_layers=len(attention.layers),
        memory_attention_feed_forward_hidden_size=attention.layers[0].linear1.out_features,
        memory_attention_rope_feat_sizes=[size // 16, size // 16],
        memory_encoder_output_channels=model.mem_dim,
        memory_fuser_num_layers=len(model.memory_encoder.fuser.layers),
    )
    return image, video


def save_pretrained(model: nn.Module, out: str | PathLike[str]) -> Path:
    """Write ``model`` (a ``SAM2Base``) as one transformers folder ``out``, laid out as the hub's SAM 2 folders
    (``facebook/sam2.1-hiera-*``): ``Sam2VideoModel`` weights and config with ``Sam2VideoProcessor``, which
    ``Sam2VideoModel`` / ``Sam2VideoProcessor`` and ``Sam2Model`` / ``Sam2Processor`` all load (the image model
    takes the subset it has and skips the memory parts). The weights are loaded into both HF models strictly
    first. Returns ``out``."""
    from transformers import (
        Sam2ImageProcessor,
        Sam2Model,
        Sam2VideoModel,
        Sam2VideoProcessor,
        Sam2VideoVideoProcessor,
    )

    image_config, video_config = hf_configs(model)
    state = to_hf_state_dict(model.state_dict())
    out = Path(out)
    image_model = Sam2Model(image_config)
    image_keys = set(image_model.state_dict())
    image_model.load_state_dict({k: v for k, v in state.items() if k in image_keys}, strict=True)
    video_model = Sam2VideoModel(video_config)
    video_model.load_state_dict(state, strict=True)
    video_model.save_pretrained(out)
    side = model.image_size
    image_processor = Sam2ImageProcessor(
        size={"height": side, "width": side}, mask_size={"height": side // 4, "width": side // 4}
    )
    video_processor = Sam2VideoVideoProcessor(size={"height": side, "width": side})
    Sam2VideoProcessor(image_processor=image_processor, video_processor=video_processor).save_pretrained(out)
    return out

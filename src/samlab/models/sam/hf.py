"""segment_anything's ``Sam`` <-> Hugging Face transformers' ``SamModel``: key names, config, folders.

The weights are the same tensors under other names (transformers' SAM port); :func:`hf_key` renames one official
key, and both directions use it, so a round trip leaves every weight bit-identical.
"""

from __future__ import annotations

import re
from os import PathLike

import torch
from segment_anything.modeling import Sam

from samlab.models.sam.model import PIXEL_MEAN, PIXEL_STD, PROMPT_EMBED_DIM

# Official name part -> transformers name part, applied in this order (the names transformers' SAM port uses).
RENAMES: tuple[tuple[str, str], ...] = (
    ("image_encoder.", "vision_encoder."),
    ("patch_embed.proj.", "patch_embed.projection."),
    (".blocks.", ".layers."),
    ("neck.0.", "neck.conv1."),
    ("neck.1.", "neck.layer_norm1."),
    ("neck.2.", "neck.conv2."),
    ("neck.3.", "neck.layer_norm2."),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("point_embeddings.", "point_embed."),
    ("mask_downscaling.0.", "mask_embed.conv1."),
    ("mask_downscaling.1.", "mask_embed.layer_norm1."),
    ("mask_downscaling.3.", "mask_embed.conv2."),
    ("mask_downscaling.4.", "mask_embed.layer_norm2."),
    ("mask_downscaling.6.", "mask_embed.conv3."),
    ("output_upscaling.0.", "upscale_conv1."),
    ("output_upscaling.1.", "upscale_layer_norm."),
    ("output_upscaling.3.", "upscale_conv2."),
    (".norm", ".layer_norm"),
)
# Three-layer MLP heads: layers.0 / 1 / 2 are proj_in / layers.0 / proj_out in transformers.
_MLP_HEAD = re.compile(r"(iou_prediction_head|output_hypernetworks_mlps\.\d+)\.layers\.(\d)\.")
_MLP_NAMES = {"0": "proj_in", "1": "layers.0", "2": "proj_out"}
# transformers keeps a copy of the prompt encoder's random Fourier matrix for the image positional encoding.
SHARED_EMBEDDING = "shared_image_embedding.positional_embedding"
PROMPT_GAUSSIAN = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"


def hf_key(key: str) -> str:
    """The transformers ``SamModel`` name of official ``Sam`` state-dict key ``key``."""
    for old, new in RENAMES:
        key = key.replace(old, new)
    return _MLP_HEAD.sub(lambda m: f"{m.group(1)}.{_MLP_NAMES[m.group(2)]}.", key)


def to_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official ``Sam`` state dict under ``SamModel``'s names (with its shared image embedding)."""
    out = {hf_key(key): value for key, value in state.items()}
    out[SHARED_EMBEDDING] = state[PROMPT_GAUSSIAN]
    return out


def from_hf_state_dict(state: dict[str, torch.Tensor], keys: list[str]) -> dict[str, torch.Tensor]:
    """The official-key state dict of a ``SamModel`` state dict, for the official ``keys`` (a ``Sam``'s state-dict
    keys); keys the HF state dict lacks are left out (reported missing by the loader), and HF keys no official key
    maps to come back under their own names (reported unexpected)."""
    used = {SHARED_EMBEDDING}
    out = {}
    for key in keys:
        name = hf_key(key)
        if key == PROMPT_GAUSSIAN and name not in state:  # tied to the shared copy, which safetensors keeps alone
            name = SHARED_EMBEDDING
        if name in state:
            out[key] = state[name]
            used.add(name)
    out.update({key: value for key, value in state.items() if key not in used})
    return out


def hf_config(sam: Sam, image_size: int):
    """transformers' ``SamConfig`` of ``sam`` (a segment_anything ``Sam`` at ``image_size``)."""
    from transformers import SamConfig, SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig

    encoder = sam.image_encoder
    blocks = encoder.blocks
    embed_dim = encoder.patch_embed.proj.out_channels
    patch = encoder.patch_embed.proj.kernel_size[0]
    vision = SamVisionConfig(
        hidden_size=embed_dim,
        num_hidden_layers=len(blocks),
        num_attention_heads=blocks[0].attn.num_heads,
        global_attn_indexes=[i for i, block in enumerate(blocks) if block.window_size == 0],
        window_size=max(block.window_size for block in blocks),
        image_size=image_size,
        patch_size=patch,
        mlp_dim=blocks[0].mlp.lin1.out_features,
        output_channels=PROMPT_EMBED_DIM,
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=PROMPT_EMBED_DIM,
        image_size=image_size,
        patch_size=patch,
        image_embedding_size=image_size // patch,
        mask_input_channels=sam.prompt_encoder.mask_downscaling[3].out_channels,
    )
    decoder = SamMaskDecoderConfig(hidden_size=PROMPT_EMBED_DIM)
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def save_pretrained(sam: Sam, out: str | PathLike[str], image_size: int) -> None:
    """Write ``sam`` as a transformers ``SamModel`` folder with its ``SamProcessor`` (longest side ``image_size``),
    loadable by ``SamModel.from_pretrained(out)``; the weights are loaded into the HF model strictly first."""
    from transformers import SamImageProcessor, SamModel, SamProcessor

    model = SamModel(hf_config(sam, image_size))
    model.load_state_dict(to_hf_state_dict(sam.state_dict()), strict=True)
    model.save_pretrained(out)
    processor = SamImageProcessor(
        size={"longest_edge": image_size},
        pad_size={"height": image_size, "width": image_size},
        image_mean=[v / 255 for v in PIXEL_MEAN],
        image_std=[v / 255 for v in PIXEL_STD],
    )
    SamProcessor(image_processor=processor).save_pretrained(out)

"""Hugging Face ``save_pretrained`` folders (as ``huggingface-cli download`` leaves them) as official state dicts.

:func:`official_state_dict` reads a folder of transformers' ``SamModel``, ``Sam2Model`` or ``Sam2VideoModel`` and
renames its weights to the official names of the model it is loaded into (segment_anything's ``Sam``, SAM 2's
``SAM2Base``), so the ``checkpoint:`` of every module takes these folders like the official files.
"""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path

import torch
from torch import nn

from samlab.errors import DataError

SAM_TYPES = ("sam",)
SAM2_TYPES = ("sam2", "sam2_video")


def model_type(folder: str | PathLike[str]) -> str:
    """The ``model_type`` of a transformers folder's ``config.json``; :class:`DataError` naming the folder when it
    has no readable config."""
    folder = Path(folder)
    config = folder / "config.json"
    if not config.is_file():
        raise DataError(folder, "not a checkpoint file, nor a Hugging Face model folder (no config.json)")
    try:
        return str(json.loads(config.read_text(encoding="utf-8")).get("model_type"))
    except json.JSONDecodeError as err:
        raise DataError(config, f"not valid JSON ({err})") from None


def read_folder_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a ``save_pretrained`` folder: ``model.safetensors`` (or its shards), else
    ``pytorch_model.bin``; :class:`DataError` naming the folder when it has none."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("model*.safetensors"))
    if files:
        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(load_file(file))
        return state
    bin_file = folder / "pytorch_model.bin"
    if bin_file.is_file():
        return torch.load(bin_file, map_location="cpu", weights_only=True)
    raise DataError(folder, "Hugging Face folder has no model.safetensors nor pytorch_model.bin")


def official_state_dict(folder: str | PathLike[str], model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of transformers folder ``folder`` under the official key names of ``model`` (a segment_anything
    ``Sam`` or a SAM 2 ``SAM2Base``). Keys the folder lacks are absent, keys without an official name come back
    under their HF names (the loaders report both)."""
    from segment_anything.modeling import Sam

    kind = model_type(folder)
    keys = list(model.state_dict())
    state = read_folder_weights(Path(folder))
    if isinstance(model, Sam):
        if kind not in SAM_TYPES:
            raise DataError(folder, f"a SAM model takes a transformers SamModel folder, this one is a '{kind}'")
        from samlab.models.sam.hf import from_hf_state_dict

        return from_hf_state_dict(state, keys)
    if kind not in SAM2_TYPES:
        raise DataError(folder, f"a SAM 2 model takes a transformers Sam2Model folder, this one is a '{kind}'")
    from samlab.models.sam2.hf import from_hf_state_dict as sam2_from_hf

    return sam2_from_hf(state, keys)

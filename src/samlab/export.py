"""``samlab export``: a trained samlab checkpoint in the format its model's ecosystem loads.

One format per target (see :data:`FORMATS`):

- ``sam2``: ``{"model": state_dict}`` with SAM 2's official key names (LoRA merged into the weights), for
  ``sam2.build_sam.build_sam2`` / ``build_sam2_video_predictor`` with the printed config name and hydra overrides
  (also stored in the file under ``"samlab"``); from a ``SAM2VideoModule`` or a ``SAMPromptModule`` with the SAM 2
  backend.
- ``segment_anything``: the bare state dict of ``segment_anything``'s ``Sam`` (``sam_model_registry[variant]``).
- ``hf``: a ``save_pretrained`` folder of Hugging Face transformers: for SAM 2 one folder, as the hub's, that
  ``Sam2VideoModel`` / ``Sam2VideoProcessor`` and ``Sam2Model`` / ``Sam2Processor`` load; ``SamModel`` with
  ``SamProcessor``; DirectSAM's ``SegformerForSemanticSegmentation`` with its image processor, as DirectSAM's
  released checkpoints.
- ``masa``: a standalone MASA tracker checkpoint (module settings and weights) that ``samlab track --checkpoint``
  loads without the training config.

Averaged checkpoints (``samlab ckpt average``, SWA) are Lightning checkpoints too and export the same way.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import nn

from samlab.errors import DataError

FORMATS = ("sam2", "segment_anything", "hf", "masa")
"""The export formats, by target ecosystem (also listed by :mod:`samlab.commands.export`)."""

MODULE_EXPORT_KEY = "samlab_module"
"""Key marking a samlab module export (:func:`save_module_export`): its value is the module's ``class_path``."""

# Module classes by the import path stored in their checkpoints or found from their hyper-parameters.
_MODULES = {
    "sam2": "samlab.models.sam2.module.SAM2VideoModule",
    "sam": "samlab.models.sam.module.SAMPromptModule",
    "masa": "samlab.models.masa.module.MASAModule",
    "directsam": "samlab.models.directsam.module.DirectSAMModule",
}
# Arguments naming weight files the trained weights replace: not needed to rebuild the module.
_WEIGHT_FILE_ARGS = ("checkpoint",)


def _import(class_path: str) -> type:
    module_name, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def _load_torch_file(path: Path) -> Any:
    """The object of torch file ``path`` (tensors and plain values only: ``weights_only``), on the CPU; raises
    :class:`DataError` naming the file when it is missing or not a torch file."""
    if not path.is_file():
        raise DataError(path, "checkpoint file is missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise DataError(path, f"not a torch checkpoint ({err})") from None


def read_lightning_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(hyper_parameters, state_dict)`` of a samlab Lightning checkpoint (``samlab fit``, ``ckpt average``).

    Raises :class:`DataError` naming the file when it is missing, not a torch file or not a Lightning checkpoint.
    """
    path = Path(path)
    data = _load_torch_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        raise DataError(path, "not a Lightning checkpoint (no 'state_dict'); export takes samlab fit checkpoints")
    return dict(data.get("hyper_parameters") or {}), data["state_dict"]


def module_class(hparams: dict[str, Any], state: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> type:
    """The samlab LightningModule class a checkpoint was saved from (its ``_class_path`` when LightningCLI stored
    one, else recognised from its hyper-parameters and weight names)."""
    if isinstance(hparams.get("_class_path"), str):
        return _import(hparams["_class_path"])
    if any(key.startswith("model.segformer.") for key in state):
        family = "directsam"
    elif "fusion_blocks" in hparams:
        family = "masa"
    elif "backend" in hparams:
        family = "sam"
    elif any(key.startswith("model.memory_attention.") for key in state):
        family = "sam2"
    else:
        raise DataError(path, "not a checkpoint of a samlab module (SAM 2, SAM, MASA or DirectSAM)")
    return _import(_MODULES[family])


def rebuild_module(path: str | os.PathLike[str]) -> LightningModule:
    """The module of Lightning checkpoint ``path`` rebuilt from its hyper-parameters with its trained weights
    (strictly loaded), in eval mode. Weight files named by the hyper-parameters (``checkpoint``) are not read."""
    hparams, state = read_lightning_checkpoint(path)
    cls = module_class(hparams, state, path)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in hparams.items() if k in accepted and not k.startswith("_")}
    kwargs.update({k: None for k in _WEIGHT_FILE_ARGS if k in accepted and not _defines_architecture(cls, k)})
    for name in ("pretrained", "checkpoint"):
        folder = kwargs.get(name)
        if folder is not None and not Path(folder).exists():
            raise DataError(path, f"the model was built from the {name} folder {folder} (its config), which is missing")
    module = cls(**kwargs)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise DataError(path, f"checkpoint does not fit the {cls.__name__} of its hyper-parameters: {err}") from None
    return module.eval()


def _defines_architecture(cls: type, argument: str) -> bool:
    """Whether weight-file ``argument`` of ``cls`` also gives the model's configuration (DirectSAM's folders)."""
    from samlab.models.directsam.module import DirectSAMModule

    return issubclass(cls, DirectSAMModule)


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge peft LoRA adapters into their base linears (peft's ``merge``) and put the plain linears back, in place;
    returns ``model``, whose state dict then has the plain key names (``...attn.qkv.weight``)."""
    from peft.tuners.lora import LoraLayer

    wrapped = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    for name, module in wrapped:
        module.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    return model


def sam2_build_args(module: LightningModule) -> dict[str, Any]:
    """How ``sam2.build_sam.build_sam2`` rebuilds the SAM 2 model of ``module``: ``config_file`` (the package's
    config of its variant) and ``hydra_overrides_extra`` (its image size when not 1024, and its model overrides)."""
    from samlab.models.sam2.model import VARIANTS, size_overrides

    hp = module.hparams
    overrides = [] if hp.image_size == 1024 else size_overrides(hp.image_size)
    return {"config_file": VARIANTS[hp.variant], "hydra_overrides_extra": [*overrides, *(hp.model_overrides or [])]}


def _sam2_model(module: LightningModule, path: str | os.PathLike[str]) -> nn.Module:
    from samlab.models.sam.module import SAMPromptModule
    from samlab.models.sam2.module import SAM2VideoModule

    if isinstance(module, SAM2VideoModule) or (
        isinstance(module, SAMPromptModule) and module.hparams.backend == "sam2"
    ):
        return merge_lora(module.model)
    raise DataError(path, f"format 'sam2' needs a SAM 2 model; this checkpoint is a {type(module).__name__}")


def export_sam2(module: LightningModule, out: Path, path: str | os.PathLike[str]) -> dict[str, Any]:
    model = _sam2_model(module, path)
    build = sam2_build_args(module)
    _save({"model": model.state_dict(), "samlab": build}, out)
    overrides = f", hydra_overrides_extra={build['hydra_overrides_extra']}" if build["hydra_overrides_extra"] else ""
    return {
        **build,
        "load": f"build_sam2_video_predictor({build['config_file']!r}, {str(out)!r}{overrides})",
    }


def export_segment_anything(module: LightningModule, out: Path, path: str | os.PathLike[str]) -> dict[str, Any]:
    from samlab.models.sam.model import VARIANTS
    from samlab.models.sam.module import SAMPromptModule

    if not isinstance(module, SAMPromptModule) or module.hparams.backend != "sam":
        raise DataError(path, f"format 'segment_anything' needs a SAM (backend 'sam'); got {type(module).__name__}")
    hp = module.hparams
    _save(module.model.state_dict(), out)
    result: dict[str, Any] = {"variant": hp.variant, "image_size": hp.image_size}
    if hp.encoder is None and hp.image_size == 1024:
        result["load"] = f"sam_model_registry[{hp.variant!r}](checkpoint={str(out)!r})"
    else:
        encoder = hp.encoder or vars(VARIANTS[hp.variant])
        # sam_model_registry builds the released sizes at 1024 px; segment_anything's _build_sam takes these.
        result["load"] = (
            f"segment_anything.build_sam._build_sam(encoder_embed_dim={encoder['embed_dim']}, "
            f"encoder_depth={encoder['depth']}, encoder_num_heads={encoder['num_heads']}, "
            f"encoder_global_attn_indexes={list(encoder['global_attn_indexes'])}, checkpoint={str(out)!r})"
        )
        if hp.image_size != 1024:
            result["note"] = f"segment_anything builds 1024 px models; this one was trained at {hp.image_size} px"
    return result


def export_hf(module: LightningModule, out: Path, path: str | os.PathLike[str]) -> dict[str, Any]:
    from samlab.models.directsam.module import DirectSAMModule
    from samlab.models.sam.module import SAMPromptModule
    from samlab.models.sam2.module import SAM2VideoModule

    if isinstance(module, DirectSAMModule):
        from samlab.models.directsam.model import save_pretrained

        save_pretrained(module.model, out, module.image_size)
        return {"load": f"AutoModelForSemanticSegmentation.from_pretrained({str(out)!r})"}
    if isinstance(module, SAMPromptModule) and module.hparams.backend == "sam":
        from samlab.models.sam.hf import save_pretrained

        save_pretrained(module.model, out, module.hparams.image_size)
        return {"load": f"SamModel.from_pretrained({str(out)!r})"}
    if isinstance(module, SAM2VideoModule | SAMPromptModule):
        from samlab.models.sam2.hf import save_pretrained

        folder = save_pretrained(_sam2_model(module, path), out)
        return {
            "load": f"Sam2Model.from_pretrained({str(folder)!r})",
            "video": f"Sam2VideoModel.from_pretrained({str(folder)!r})",
        }
    raise DataError(path, f"format 'hf' has no Hugging Face model for a {type(module).__name__}")


def save_module_export(module: LightningModule, out: str | os.PathLike[str]) -> None:
    """Write ``module`` as a standalone samlab checkpoint: its class path, its settings (weight-file arguments
    cleared) and its state dict, loadable by :func:`load_module_export` without any config."""
    accepted = inspect.signature(type(module).__init__).parameters
    init_args = {k: v for k, v in module.hparams.items() if k in accepted}
    init_args.update(
        {k: None for k in _WEIGHT_FILE_ARGS if k in accepted and not _defines_architecture(type(module), k)}
    )
    class_path = f"{type(module).__module__}.{type(module).__qualname__}"
    _save({MODULE_EXPORT_KEY: class_path, "init_args": init_args, "state_dict": module.state_dict()}, Path(out))


def load_module_export(path: str | os.PathLike[str], expected: type | None = None) -> LightningModule:
    """The module of a standalone samlab checkpoint (:func:`save_module_export`), in eval mode.

    ``expected``: the module class it must be (or derive from). Raises :class:`DataError` naming the file when it
    is not such a checkpoint, holds another module, or its weights do not fit.
    """
    path = Path(path)
    data = _load_torch_file(path)
    if not isinstance(data, dict) or not isinstance(data.get(MODULE_EXPORT_KEY), str):
        raise DataError(path, "not a standalone samlab checkpoint (write one with `samlab export --format masa`)")
    cls = _import(data[MODULE_EXPORT_KEY])
    if expected is not None and not issubclass(cls, expected):
        raise DataError(path, f"holds a {cls.__name__}, expected a {expected.__name__}")
    module = cls(**data["init_args"])
    try:
        module.load_state_dict(data["state_dict"], strict=True)
    except RuntimeError as err:
        raise DataError(path, f"weights do not fit the {cls.__name__}: {err}") from None
    return module.eval()


def export_masa(module: LightningModule, out: Path, path: str | os.PathLike[str]) -> dict[str, Any]:
    from samlab.models.masa.module import MASAModule

    if not isinstance(module, MASAModule):
        raise DataError(path, f"format 'masa' needs a MASA checkpoint; this one is a {type(module).__name__}")
    save_module_export(module, out)
    return {"load": f"samlab track --checkpoint {out} --frames DIR --detections det.txt --out tracks.txt"}


_EXPORTERS: dict[str, Callable[[LightningModule, Path, str | os.PathLike[str]], dict[str, Any]]] = {
    "sam2": export_sam2,
    "segment_anything": export_segment_anything,
    "hf": export_hf,
    "masa": export_masa,
}


def export(ckpt: str | os.PathLike[str], format: str, out: str | os.PathLike[str]) -> dict[str, Any]:
    """Export Lightning checkpoint ``ckpt`` (``samlab fit``, ``samlab ckpt average``) to ``out`` in ``format``.

    Returns what was written: ``format``, ``module`` (class name), ``out`` and ``load`` (the call that loads it in
    the target library), plus per format ``config_file`` / ``hydra_overrides_extra`` (``sam2``), ``variant``
    (``segment_anything``), ``video`` (the ``Sam2VideoModel`` call of a SAM 2 ``hf`` export, same folder).
    """
    if format not in _EXPORTERS:
        raise ValueError(f"unknown export format {format!r}; expected one of {list(FORMATS)}")
    module = rebuild_module(ckpt)
    target = Path(out)
    with torch.no_grad():
        result = _EXPORTERS[format](module, target, ckpt)
    return {"format": format, "module": type(module).__name__, "out": str(target), **result}


def _save(data: dict[str, Any], out: Path) -> None:
    """``torch.save`` to ``out`` atomically (written beside it, then renamed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    torch.save(data, partial)
    os.replace(partial, out)

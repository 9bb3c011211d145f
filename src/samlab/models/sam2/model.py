"""Building SAM 2 / SAM 2.1 models from the ``sam2`` package configs, loading checkpoints, freezing parts, LoRA.

Plain torch (plus ``sam2``'s hydra configs and ``peft``); nothing here knows about Lightning or data.
"""

from __future__ import annotations

import functools
import logging
import pickle
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import sam2  # noqa: F401  (importing it points hydra's config search path at the package's configs)
import torch
import torch.utils.checkpoint
from hydra import compose
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from samlab.errors import DataError

log = logging.getLogger(__name__)

VARIANTS: dict[str, str] = {
    f"{version}_hiera_{size}": f"configs/{version}/{version}_hiera_{size}.yaml"
    for version in ("sam2", "sam2.1")
    for size in ("t", "s", "b+", "l")
}
"""Model variant name → config file inside the ``sam2`` package."""

# Keys that SAM 2.1 added to SAM 2.0 (``no_obj_embed_spatial: true`` and ``proj_tpos_enc_in_obj_ptrs: true``).
SAM21_ONLY_KEYS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight", "obj_ptr_tpos_proj.bias")

# Which top-level attributes of ``SAM2Base`` make up each part that :func:`freeze` can freeze.
MODEL_PARTS: dict[str, tuple[str, ...]] = {
    "image_encoder": ("image_encoder",),
    "prompt_encoder": ("sam_prompt_encoder",),
    "mask_decoder": ("sam_mask_decoder",),
    "memory": (
        "memory_attention",
        "memory_encoder",
        "maskmem_tpos_enc",
        "no_mem_embed",
        "no_mem_pos_enc",
        "no_obj_embed_spatial",
        "no_obj_ptr",
        "obj_ptr_proj",
        "obj_ptr_tpos_proj",
        "mask_downsample",
    ),
}


def build_sam2_model(
    variant: str = "sam2.1_hiera_b+",
    image_size: int = 1024,
    checkpoint: str | PathLike[str] | None = None,
    train: bool = True,
    overrides: Sequence[str] = (),
    drop_path_rate: float = 0.1,
) -> nn.Module:
    """Build a ``sam2.modeling.sam2_base.SAM2Base`` from the package's hydra config of ``variant``.

    ``variant``: one of :data:`VARIANTS` (``"sam2.1_hiera_t"`` … ``"sam2_hiera_l"``). ``image_size``: the square
    input side in pixels, a multiple of 32 (Hiera's stride-4 patches tile its 8×8 window position embedding and the
    last stage has stride 32); 1024 is what the released checkpoints were trained at, and any other size still
    loads them (position embeddings are interpolated). The model settings are the package's, which are those of
    SAM 2's fine-tuning recipe (``sam2.1_hiera_b+_MOSE_finetune.yaml``: mask input used as output, multimask
    output for 0–1 clicks and tracking, object scores, 7 memories); ``train=True`` adds that recipe's stochastic
    depth (``drop_path_rate``) and returns the model in train mode, ``train=False`` in eval mode without it.
    ``overrides`` are extra hydra overrides (``"++model.num_maskmem=5"``). ``checkpoint`` is loaded with
    :func:`load_checkpoint` (non-strict, summary logged). The model is on CPU.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown SAM 2 variant '{variant}'; expected one of {sorted(VARIANTS)}")
    if image_size <= 0 or image_size % 32:
        raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}")
    hydra_overrides = [
        *size_overrides(image_size),
        "++model.compile_image_encoder=false",
        f"++model.image_encoder.trunk.drop_path_rate={drop_path_rate if train else 0.0}",
        *overrides,
    ]
    cfg = compose(config_name=VARIANTS[variant], overrides=hydra_overrides)
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.train(train)


def size_overrides(image_size: int) -> list[str]:
    """The hydra overrides that set a SAM 2 config's input side to ``image_size`` (a multiple of 32)."""
    feat = image_size // 16
    return [
        f"++model.image_size={image_size}",
        # RoPE tables sized for the backbone's stride-16 grid (the package recomputes them lazily otherwise).
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{feat},{feat}]",
    ]


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did: the file, the model keys it did not fill and the keys it did not use."""

    path: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every model key was loaded and every checkpoint key used."""
        return not self.missing and not self.unexpected

    def summary(self) -> str:
        """A readable multi-line summary: counts per key prefix, and the SAM 2.0 / 2.1 explanation when it applies."""
        lines = [f"checkpoint {self.path}: {len(self.missing)} missing, {len(self.unexpected)} unexpected keys"]
        for title, keys in (("missing (left at their initial values)", self.missing), ("unexpected", self.unexpected)):
            if keys:
                lines.append(f"  {title}:")
                lines.extend(f"    {prefix}: {count}" for prefix, count in group_keys(keys).items())
        if self.missing and set(self.missing) <= set(SAM21_ONLY_KEYS):
            lines.append(
                "  these are the parameters SAM 2.1 added (no_obj_embed_spatial, obj_ptr_tpos_proj): a SAM 2.0 "
                "checkpoint in a SAM 2.1 model; they keep their random init and are learnt in fine-tuning"
            )
        if self.unexpected and set(self.unexpected) <= set(SAM21_ONLY_KEYS):
            lines.append(
                "  these are SAM 2.1-only parameters (no_obj_embed_spatial, obj_ptr_tpos_proj): a SAM 2.1 "
                "checkpoint in a SAM 2.0 model; use a sam2.1_* variant to use them"
            )
        return "\n".join(lines)


def group_keys(keys: Iterable[str], depth: int = 2) -> dict[str, int]:
    """Count state-dict ``keys`` by their first ``depth`` dotted components (``"image_encoder.trunk"``: 183)."""
    counts: dict[str, int] = defaultdict(int)
    for key in keys:
        counts[".".join(key.split(".")[:depth])] += 1
    return dict(sorted(counts.items()))


def read_state_dict(path: str | PathLike[str], weights_only: bool = True) -> dict[str, torch.Tensor]:
    """The model state dict in a checkpoint file.

    Accepts SAM 2's official checkpoints ``{"model": state_dict}`` (also what its trainer saves), a bare state dict,
    and Lightning checkpoints ``{"state_dict": ...}`` whose keys are prefixed ``model.`` (the prefix is removed).
    ``weights_only=False`` allows files that pickle Python objects besides tensors (only for files you trust).
    Raises :class:`DataError` naming the file when it is missing, not a torch file, or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint file is missing")
    try:
        data = torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if weights_only and "Unsupported global" in str(err):
            raise DataError(
                path, "checkpoint pickles Python objects besides tensors; load it with weights_only=False if trusted"
            ) from None
        raise DataError(path, f"not a torch checkpoint ({err})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise DataError(path, f"not a torch checkpoint ({err})") from None
    if not isinstance(data, dict):
        raise DataError(path, f"checkpoint holds a {type(data).__name__}, expected a dict with a state dict")
    if "model" in data and isinstance(data["model"], dict):
        state = data["model"]
    elif "state_dict" in data and isinstance(data["state_dict"], dict):
        state = {k.removeprefix("model."): v for k, v in data["state_dict"].items() if k.startswith("model.")}
        if not state:
            raise DataError(path, "Lightning checkpoint has no 'model.' parameters (not a SAM 2 module checkpoint)")
    else:
        state = data
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad or not state:
        what = f"entry '{bad[0]}' is a {type(state[bad[0]]).__name__}" if bad else "it is empty"
        raise DataError(path, f"not a state dict ({what}); expected {{'model': state_dict}} or a state dict")
    return state


def read_weights(path: str | PathLike[str], model: nn.Module, weights_only: bool = True) -> dict[str, torch.Tensor]:
    """The official-key weights of checkpoint file ``path`` (:func:`read_state_dict`) or, for a folder, of the
    Hugging Face ``save_pretrained`` folder it is (:func:`samlab.models.hf.official_state_dict`)."""
    if Path(path).is_dir():
        from samlab.models.hf import official_state_dict

        return official_state_dict(path, model)
    return read_state_dict(path, weights_only=weights_only)


def load_checkpoint(
    model: nn.Module, path: str | PathLike[str], strict: bool = False, weights_only: bool = True
) -> LoadReport:
    """Load the weights of checkpoint ``path`` (see :func:`read_state_dict`; a folder is read as a Hugging Face
    ``Sam2Model`` / ``Sam2VideoModel`` folder) into ``model``; returns a report.

    Keys of a model wrapped by :func:`add_lora` (``...qkv.base_layer.weight``) are filled from the plain keys
    (``...qkv.weight``). With ``strict=True`` any missing or unexpected key raises :class:`DataError`; otherwise
    the report's summary is logged (a warning when incomplete). A checkpoint that shares no key with the model
    (another architecture) always raises :class:`DataError`; tensors of the wrong shape raise too.
    """
    state = read_weights(path, model, weights_only)
    model_keys = set(model.state_dict())
    for key in model_keys:
        plain = key.replace(".base_layer.", ".")
        if plain != key and plain in state and key not in state:
            state[key] = state.pop(plain)
    report = LoadReport(
        path=str(path),
        missing=sorted(model_keys - state.keys()),
        unexpected=sorted(state.keys() - model_keys),
    )
    if not model_keys & state.keys():
        raise DataError(path, f"none of the checkpoint's {len(state)} keys is a parameter of this model")
    if strict and not report.complete:
        raise DataError(path, report.summary())
    try:
        model.load_state_dict({k: v for k, v in state.items() if k in model_keys}, strict=False)
    except RuntimeError as err:
        raise DataError(path, f"checkpoint does not fit the model: {err}") from None
    log.log(logging.INFO if report.complete else logging.WARNING, report.summary())
    return report


def freeze(
    model: nn.Module,
    image_encoder: bool = False,
    prompt_encoder: bool = False,
    mask_decoder: bool = False,
    memory: bool = False,
) -> None:
    """Stop gradients (``requires_grad = False``) for the chosen parts of a SAM 2 model (see :data:`MODEL_PARTS`).

    ``memory`` covers memory attention, memory encoder and the memory / object-pointer embeddings.
    Parts not chosen are left as they are (freezing is never undone here).
    """
    chosen = {"image_encoder": image_encoder, "prompt_encoder": prompt_encoder, "mask_decoder": mask_decoder}
    chosen["memory"] = memory
    for part, on in chosen.items():
        if not on:
            continue
        for attribute in MODEL_PARTS[part]:
            value = getattr(model, attribute, None)
            if isinstance(value, nn.Module):
                value.requires_grad_(False)
            elif isinstance(value, nn.Parameter):
                value.requires_grad = False


def add_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: int = 16,
    targets: Sequence[str] = ("qkv", "proj"),
    dropout: float = 0.0,
) -> nn.Module:
    """Add LoRA adapters (peft) to the attention linears of the Hiera trunk, in place; returns ``model``.

    ``targets`` name linears of every Hiera block's attention (``blocks.N.attn.qkv`` and ``blocks.N.attn.proj``
    exist); the stage-transition ``blocks.N.proj`` linears are not touched. The whole image encoder (trunk and
    FPN neck) is frozen except the new LoRA matrices; the rest of the model keeps its ``requires_grad``.
    Load checkpoints before or after: :func:`load_checkpoint` maps plain keys to the wrapped ``base_layer`` keys.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive, got {rank}")
    unknown = set(targets) - {"qkv", "proj"}
    if unknown or not targets:
        raise ValueError(f"LoRA targets must be among ('qkv', 'proj') (Hiera attention linears), got {list(targets)}")
    trunk = model.image_encoder.trunk
    model.image_encoder.requires_grad_(False)
    pattern = rf".*blocks\.\d+\.attn\.({'|'.join(re.escape(t) for t in targets)})"
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern, bias="none")
    inject_adapter_in_model(config, trunk)
    for name, param in trunk.named_parameters():
        param.requires_grad = "lora_" in name
    return model


def _checkpointed(forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``forward(*args, **kwargs)`` with its activations recomputed in backward instead of kept."""
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)


def checkpointed_modules(model: nn.Module, image_encoder: bool = False, memory: bool = False) -> list[nn.Module]:
    """The modules :func:`checkpoint_activations` wraps: every Hiera block (``image_encoder``), every memory-attention
    layer and the memory encoder (``memory``)."""
    modules: list[nn.Module] = []
    if image_encoder:
        modules.extend(model.image_encoder.trunk.blocks)
    if memory:
        modules.extend(model.memory_attention.layers)
        modules.append(model.memory_encoder)
    return modules


def checkpoint_activations(model: nn.Module, image_encoder: bool = False, memory: bool = False) -> None:
    """Activation checkpointing (``torch.utils.checkpoint``, non-reentrant) of a SAM 2 model's blocks, in place.

    Each module of :func:`checkpointed_modules` keeps only its inputs for backward and recomputes its activations
    there (with the RNG state of the forward, so dropout and drop path draw the same masks): the same loss and
    gradients for less memory and about one more forward of those modules. Outside autograd (``no_grad``,
    evaluation) the modules run as before. The state dict is unchanged.
    """
    for module in checkpointed_modules(model, image_encoder, memory):
        if "forward" not in vars(module):  # not wrapped yet
            module.forward = functools.partial(_checkpointed, module.forward)


def _disable_grad(module: nn.Module, args: Any) -> None:
    module._grad_was_enabled = torch.is_grad_enabled()
    torch.set_grad_enabled(False)


def _restore_grad(module: nn.Module, args: Any, output: Any) -> None:
    torch.set_grad_enabled(module._grad_was_enabled)


def run_without_grad(module: nn.Module) -> None:
    """Run ``module``'s forward under ``no_grad`` from now on (for a frozen part: autograd keeps none of its
    activations and its outputs need no graph). Its parameters are frozen too (``requires_grad = False``)."""
    module.requires_grad_(False)
    module.register_forward_pre_hook(_disable_grad)
    module.register_forward_hook(_restore_grad, always_call=True)


def cast_frozen(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> int:
    """Store the frozen parameters (``requires_grad = False``) of ``model`` in ``dtype``, in place; returns the bytes
    saved. Under ``bf16-mixed`` autocast the layers cast their weights to bfloat16 anyway, so storing frozen ones in
    bfloat16 halves their memory and changes no result; without autocast the mixed dtypes fail."""
    saved = 0
    for param in model.parameters():
        if not param.requires_grad and param.dtype != dtype and param.is_floating_point():
            before = param.numel() * param.element_size()
            param.data = param.data.to(dtype)
            saved += before - param.numel() * param.element_size()
    return saved

"""Optimiser parameter groups and learning-rate schedule of SAM 2 fine-tuning.

``sam2_param_groups`` gives the per-parameter learning rate and weight decay of the official recipe
(``sam2.1_hiera_b+_MOSE_finetune.yaml``): a separate learning rate for the image encoder, layer-wise decay over the
Hiera trunk blocks (deeper blocks train faster), position embeddings exempt from the decay, and no weight decay on
biases and LayerNorms. ``cosine_schedule`` is the recipe's cosine decay to a fraction of the peak, with an optional
linear warm-up.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

DEFAULT_LR_SCALE_OVERRIDES: Mapping[str, float] = {"*pos_embed*": 1.0}


def _trunk_layer_id(relative_name: str, num_blocks: int) -> int:
    """Depth of a trunk parameter: 0 for the embeddings, ``i + 1`` for block ``i``, ``num_blocks + 1`` otherwise.

    The name is relative to the trunk (``blocks.3.attn.qkv.weight``); the rules are those of BEiT's layer decay
    that SAM 2's Hiera uses (``get_layer_id``).
    """
    if "rel_pos" in relative_name:
        return num_blocks + 1
    if "pos_embed" in relative_name or "patch_embed" in relative_name:
        return 0
    parts = relative_name.split(".")
    if parts[0] == "blocks":
        return int(parts[1]) + 1
    return num_blocks + 1


def _owned_by(model: nn.Module, module_types: tuple[type[nn.Module], ...]) -> set[str]:
    """Names of the parameters held directly by a module of one of ``module_types``."""
    names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, module_types):
            names.update(
                f"{module_name}.{name}" if module_name else name for name, _ in module.named_parameters(recurse=False)
            )
    return names


def sam2_param_groups(
    model: nn.Module,
    lr: float,
    vision_lr: float | None = None,
    weight_decay: float = 0.1,
    layer_decay: float | None = 0.9,
    *,
    vision_prefix: str = "image_encoder",
    trunk_prefix: str = "image_encoder.trunk",
    lr_scale_overrides: Mapping[str, float] | None = None,
    no_weight_decay_patterns: Sequence[str] = ("*bias*",),
    no_weight_decay_modules: tuple[type[nn.Module], ...] = (nn.LayerNorm,),
) -> list[dict[str, Any]]:
    """Parameter groups for ``torch.optim.AdamW`` following SAM 2's fine-tuning recipe.

    Learning rate of a parameter: ``vision_lr`` under ``vision_prefix`` (the image encoder), else ``lr``; times
    ``layer_decay ** (num_blocks + 1 - layer_id)`` under ``trunk_prefix``, where ``layer_id`` is 0 for the patch
    and position embeddings, ``i + 1`` for trunk block ``i`` and ``num_blocks + 1`` (scale 1) for anything else;
    a trunk parameter whose name matches a ``lr_scale_overrides`` pattern (fnmatch, first match wins) takes that
    scale instead (the recipe keeps position embeddings at 1.0). Weight decay is ``weight_decay``, except 0 for
    names matching ``no_weight_decay_patterns`` and for parameters held by ``no_weight_decay_modules``. As in the
    official recipe, that is ``nn.LayerNorm`` only: SAM 2's ``LayerNorm2d`` weights are decayed; pass it here to
    exempt them too. Frozen parameters (``requires_grad=False``) are left out.

    Args:
        model: a SAM 2 model (``SAM2Base`` layout: ``image_encoder.trunk.blocks``) or any module; without a trunk
            (no ``trunk_prefix`` module with ``blocks``) no layer decay applies.
        lr: peak learning rate of everything outside the image encoder.
        vision_lr: peak learning rate of the image encoder; ``lr`` when None.
        weight_decay: decoupled weight decay of the decayed parameters.
        layer_decay: per-block learning-rate decay factor in (0, 1]; None or 1 turns it off.
        vision_prefix: module path of the image encoder.
        trunk_prefix: module path of the block-structured trunk the layer decay applies to.
        lr_scale_overrides: ``{pattern: scale}`` for trunk parameters; default ``{"*pos_embed*": 1.0}``.
        no_weight_decay_patterns: fnmatch patterns of parameter names without weight decay.
        no_weight_decay_modules: module types whose own parameters get no weight decay.

    Returns:
        One dict per distinct (lr, weight decay) pair, in first-parameter order, with ``params``, ``param_names``,
        ``lr`` and ``weight_decay``.
    """
    if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    overrides = DEFAULT_LR_SCALE_OVERRIDES if lr_scale_overrides is None else lr_scale_overrides
    vision_lr = lr if vision_lr is None else vision_lr
    num_blocks = _num_trunk_blocks(model, trunk_prefix)
    no_decay_owned = _owned_by(model, no_weight_decay_modules)

    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        param_lr = vision_lr if _under(name, vision_prefix) else lr
        if layer_decay is not None and num_blocks is not None and _under(name, trunk_prefix):
            relative_name = name[len(trunk_prefix) + 1 :]
            scale = layer_decay ** (num_blocks + 1 - _trunk_layer_id(relative_name, num_blocks))
            scale = next((float(v) for p, v in overrides.items() if fnmatch.fnmatchcase(name, p)), scale)
            param_lr = param_lr * scale
        no_decay = name in no_decay_owned or any(fnmatch.fnmatchcase(name, p) for p in no_weight_decay_patterns)
        param_decay = 0.0 if no_decay else weight_decay
        group = groups.setdefault(
            (param_lr, param_decay), {"params": [], "param_names": [], "lr": param_lr, "weight_decay": param_decay}
        )
        group["params"].append(param)
        group["param_names"].append(name)
    return list(groups.values())


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _num_trunk_blocks(model: nn.Module, trunk_prefix: str) -> int | None:
    """Number of ``blocks`` of the trunk module, None when the model has no such trunk (no layer decay then)."""
    try:
        trunk = model.get_submodule(trunk_prefix)
    except AttributeError:
        return None
    blocks = getattr(trunk, "blocks", None)
    return None if blocks is None else len(blocks)


def cosine_lr_factor(step: int, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.1) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based): linear warm-up, then cosine decay.

    Warm-up rises linearly over ``warmup_steps`` steps to 1 (``(step + 1) / warmup_steps``); then the factor
    follows ``min_lr_ratio + (1 - min_lr_ratio) * (1 + cos(pi * progress)) / 2`` with ``progress`` going from 0 to 1
    over the remaining steps, and stays at ``min_lr_ratio`` after ``total_steps``. With no warm-up this is fvcore's
    ``CosineParamScheduler(start, start * min_lr_ratio)`` at ``where = step / total_steps``, SAM 2's schedule.

    Returns:
        The factor in ``(0, 1]``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_schedule(
    optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.1
) -> LambdaLR:
    """A per-step ``LambdaLR`` scaling every group's initial learning rate by ``cosine_lr_factor``.

    The default ``min_lr_ratio=0.1`` is the MOSE recipe (cosine from ``lr`` to ``lr / 10``); call ``step()`` after
    every optimiser step (Lightning: ``interval="step"``).

    Args:
        optimizer: the optimiser, its groups' ``lr`` being the peak values.
        total_steps: optimiser steps of the whole run (>= 1).
        warmup_steps: linear warm-up steps (>= 0, < ``total_steps``).
        min_lr_ratio: final learning rate as a fraction of the peak, in [0, 1].

    Returns:
        The scheduler.
    """
    if total_steps < 1 or not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"need total_steps >= 1 and 0 <= warmup_steps < total_steps, got {total_steps}, {warmup_steps}"
        )
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    return LambdaLR(optimizer, lambda step: cosine_lr_factor(step, total_steps, warmup_steps, min_lr_ratio))


def cosine_over_run(optimizer: Optimizer, trainer: Any, warmup_steps: int = 0, min_lr_ratio: float = 0.1) -> dict:
    """``configure_optimizers``' return value for ``optimizer`` with a per-step :func:`cosine_schedule` spanning the
    whole run of ``trainer`` (its ``estimated_stepping_batches``); warm-up is cut to fit runs shorter than it.

    Raises ValueError for runs without an end (no ``max_steps`` nor ``max_epochs``).
    """
    total = trainer.estimated_stepping_batches
    if not math.isfinite(total):
        raise ValueError("the cosine schedule needs a finite run: set trainer max_steps or max_epochs")
    total = max(int(total), 1)
    scheduler = cosine_schedule(
        optimizer, total_steps=total, warmup_steps=min(warmup_steps, total - 1), min_lr_ratio=min_lr_ratio
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

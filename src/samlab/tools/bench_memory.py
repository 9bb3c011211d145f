"""`samlab bench memory`: a device-independent memory account of one SAM 2 training step, per option set.

The step runs on fake tensors (``torch._subclasses.fake_tensor.FakeTensorMode``: shapes and dtypes, no data, no
compute), so base+ at 1024 px costs neither memory nor time; ``bf16-mixed`` is modelled by CPU bfloat16 autocast.
What autograd keeps for backward is counted with ``torch.autograd.graph.saved_tensors_hooks``, each storage once and
parameters apart; attention is counted as a flash/memory-efficient kernel keeps it (inputs, output and log-sum-exp,
not the attention matrix), as on a GPU. The expected peak of a step is

    weights + gradients + AdamW state (2 float32 per trainable parameter) + DDP gradient buckets + saved tensors,

an estimate that leaves out allocator fragmentation, kernel workspaces and the largest transient of backward.
The saved tensors are measured at a reduced number of frames ``T_r`` and ``T_r + 1``; the difference is the cost of
one more frame, extrapolated linearly to the recipe's frames (the fake step at the recipe's frames is printed too,
as a check).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samlab.data.batch import VideoBatch
from samlab.models.sam2.prompts import PromptConfig

GB = 1e9

# The prompting of the account: the recipe's heaviest plan (two initial conditioning frames with a click each, both
# corrected with 7 clicks), drawn the same on both sides (the plan generator is seeded alike).
ACCOUNT_PROMPTS = PromptConfig(
    prob_to_use_pt_input_for_train=1.0,
    prob_to_use_box_input_for_train=0.0,
    num_init_cond_frames_for_train=2,
    rand_init_cond_frames_for_train=False,
    num_frames_to_correct_for_train=2,
    rand_frames_to_correct_for_train=False,
    num_correction_pt_per_frame=7,
    prob_to_sample_from_gt_for_train=0.1,
)

OPTION_SETS: dict[str, dict[str, Any]] = {
    "recipe": {},
    "ckpt_encoder": {"checkpoint_image_encoder": True},
    "ckpt_all": {"checkpoint_image_encoder": True, "checkpoint_memory": True},
    "frozen_encoder": {"freeze_image_encoder": True},
    "frozen_encoder_bf16": {"freeze_image_encoder": True, "frozen_weights_bf16": True},
    "frozen_encoder_bf16_ckpt_memory": {
        "freeze_image_encoder": True,
        "frozen_weights_bf16": True,
        "checkpoint_memory": True,
    },
}
"""Named option sets of :class:`~samlab.models.sam2.module.SAM2VideoModule` arguments that the account compares."""

# The options the official trainer has too (SAM2Train's freeze_image_encoder): its step is accounted for these.
OFFICIAL_OPTIONS = {"freeze_image_encoder"}


class _FlashAttention(torch.autograd.Function):
    """Scaled dot-product attention that keeps for backward what a flash kernel keeps: q, k, v, the output and the
    float32 log-sum-exp per query (not the attention matrix); backward recomputes the attention, with the CPU
    generator state of the forward so that dropout draws the same mask (the account runs on the CPU)."""

    @staticmethod
    def forward(ctx, q, k, v, dropout_p):  # type: ignore[override]
        ctx.rng_state = torch.random.get_rng_state()
        ctx.dropout_p = dropout_p
        out = _SDPA(q, k, v, dropout_p=dropout_p)
        ctx.save_for_backward(q, k, v, out, q.new_empty(q.shape[:-1], dtype=torch.float32))
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q, k, v, _, _ = ctx.saved_tensors
        inputs = [t.detach().requires_grad_(True) for t in (q, k, v)]
        with torch.enable_grad(), torch.random.fork_rng(devices=[]):
            torch.random.set_rng_state(ctx.rng_state)
            out = _SDPA(*inputs, dropout_p=ctx.dropout_p)
        return (*torch.autograd.grad(out, inputs, grad_out), None)


_SDPA = F.scaled_dot_product_attention


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0, **kwargs: Any):
    """``F.scaled_dot_product_attention`` (no mask, not causal, default scale) through :class:`_FlashAttention`;
    other calls go to the real function."""
    if any(kwargs.get(key) for key in ("attn_mask", "is_causal", "scale", "enable_gqa")):
        return _SDPA(q, k, v, dropout_p=dropout_p, **kwargs)
    return _FlashAttention.apply(q, k, v, dropout_p)


@contextlib.contextmanager
def flash_attention_accounting() -> Iterator[None]:
    """Route ``F.scaled_dot_product_attention`` through :func:`flash_attention` inside the block."""
    F.scaled_dot_product_attention = flash_attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = _SDPA


@dataclass
class SavedTensors:
    """Bytes autograd keeps for backward: ``bytes`` over distinct storages, parameters' storages left out."""

    excluded: set[int] = field(default_factory=set)
    storages: dict[int, int] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key not in self.excluded:
            self.storages[key] = storage.nbytes()
        return tensor


@contextlib.contextmanager
def count_saved_tensors(weights: Sequence[torch.Tensor] = ()) -> Iterator[SavedTensors]:
    """Count what autograd saves for backward inside the block (storages once; the storages of ``weights``, a
    model's parameters and buffers, are not counted). Checkpointed modules keep their inputs outside autograd's
    saved tensors: those are counted by :func:`checkpoint_input_hooks`."""
    saved = SavedTensors(excluded={t.untyped_storage()._cdata for t in weights})
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda tensor: tensor):
        yield saved


@contextlib.contextmanager
def checkpoint_input_hooks(modules: Sequence[nn.Module], saved: SavedTensors) -> Iterator[None]:
    """Count the tensor inputs of checkpointed ``modules`` (what non-reentrant checkpointing keeps) into ``saved``."""

    def record(module: nn.Module, args: tuple, kwargs: dict) -> None:
        if torch.is_grad_enabled():
            for value in [*args, *kwargs.values()]:
                for tensor in value if isinstance(value, (list, tuple)) else [value]:
                    if isinstance(tensor, torch.Tensor):
                        saved.pack(tensor)

    handles = [m.register_forward_pre_hook(record, with_kwargs=True) for m in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def synthetic_batch(num_frames: int, num_objects: int, size: int, batch_size: int = 1, seed: int = 0) -> VideoBatch:
    """``batch_size`` clips of ``num_frames`` random frames (float32, normalised) with ``num_objects`` objects each,
    visible on every frame (squares that drift): the training input of the account and of the benchmarks."""
    from samlab.data.batch import collate_clips
    from samlab.data.sampling import Clip

    rng = np.random.default_rng(seed)
    clips = []
    side = size // 4
    for b in range(batch_size):
        masks = np.zeros((num_frames, num_objects, size, size), dtype=bool)
        for o in range(num_objects):
            top, left = rng.integers(0, size - side - num_frames * (size // 64) - 1, 2)
            for t in range(num_frames):
                shift = t * (size // 64)
                masks[t, o, top + shift : top + shift + side, left + shift : left + shift + side] = True
        frames = [torch.from_numpy(rng.standard_normal((3, size, size), dtype=np.float32)) for _ in range(num_frames)]
        objects = list(range(1, num_objects + 1))
        clips.append(Clip(f"synthetic{b}", frames, masks, objects, list(range(num_frames)), (size, size)))
    return collate_clips(clips)


def parameter_bytes(model: nn.Module, ddp: bool = True) -> dict[str, int]:
    """Weights (parameters and buffers as stored), float32 gradients, AdamW state (exp_avg, exp_avg_sq in float32)
    and DDP's gradient buckets (a copy of the gradients) of ``model``'s trainable parameters, in bytes."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    return {
        "weights": weights,
        "gradients": 4 * trainable,
        "optimizer": 8 * trainable,
        "ddp_buckets": 4 * trainable if ddp else 0,
        "trainable_params": trainable,
    }


def _saved_bytes_of_step(
    step: Callable[[VideoBatch], Any],
    model: nn.Module,
    batch: VideoBatch,
    checkpointed: Sequence[nn.Module],
    bf16: bool,
    fake: bool = True,
) -> int:
    """Bytes ``step(batch)`` keeps for backward, on fake tensors (or on the real ones, ``fake=False``)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    mode = FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext()
    with mode:
        weights = [*model.parameters(), *model.buffers()]
        if fake:
            batch = VideoBatch(
                **{k: mode.from_tensor(v) if isinstance(v, torch.Tensor) else v for k, v in vars(batch).items()}
            )
            # The fake twins of the weights (memoised: the ones the step's operations see).
            weights = [mode.from_tensor(t) for t in weights]
        with (
            flash_attention_accounting(),
            count_saved_tensors(weights) as saved,
            checkpoint_input_hooks(checkpointed, saved),
            autocast,
        ):
            step(batch)
    return saved.bytes


def samlab_step(module: Any, prompts: PromptConfig, seed: int) -> Callable[[VideoBatch], Any]:
    """A samlab training step (forward and loss) on a batch, its plan drawn from ``default_rng(seed)``."""
    from samlab.losses import CORE_LOSS_KEY
    from samlab.models.sam2.vos import forward_training

    def step(batch: VideoBatch) -> torch.Tensor:
        forward = forward_training(module.model, batch, prompts, plan_rng=np.random.default_rng(seed))
        return module.loss(forward.frames, batch.masks)[CORE_LOSS_KEY]

    return step


def official_model(module: Any, prompts: PromptConfig, freeze_image_encoder: bool, seed: int) -> nn.Module:
    """``SAM2Train`` (the official training model) with ``module``'s model settings and weights and ``prompts``."""
    from samlab.models.sam2.model import build_sam2_model

    hp = module.hparams
    settings = {k: v for k, v in vars(prompts).items() if k != "pt_sampling_for_eval"}
    model = build_sam2_model(
        hp.variant,
        image_size=hp.image_size,
        train=True,
        drop_path_rate=hp.drop_path_rate,
        overrides=(
            *(hp.model_overrides or ()),
            "++model._target_=training.model.sam2.SAM2Train",
            f"++model.freeze_image_encoder={freeze_image_encoder}",
            *(f"++model.{k}={v}" for k, v in settings.items()),
        ),
    )
    model.load_state_dict(module.model.state_dict(), strict=False)
    model.rng = np.random.default_rng(seed)
    return model


def official_step(model: nn.Module, loss: nn.Module) -> Callable[[VideoBatch], Any]:
    """The official step on a batch: ``SAM2Train`` forward and the loss (samlab's ``SAM2Loss``, equal to upstream's
    ``MultiStepMultiMasksAndIous``, whose ``.item()`` a fake tensor cannot give)."""
    from training.utils.data_utils import BatchedVideoDatapoint, BatchedVideoMetaData

    from samlab.losses import CORE_LOSS_KEY

    def step(batch: VideoBatch) -> torch.Tensor:
        num_frames, num_objects = batch.masks.shape[:2]
        datapoint = BatchedVideoDatapoint(
            img_batch=batch.images,
            obj_to_frame_idx=batch.obj_to_frame_idx,
            masks=batch.masks,
            metadata=BatchedVideoMetaData(
                unique_objects_identifier=torch.zeros(num_frames, num_objects, 3, dtype=torch.long),
                frame_orig_size=torch.zeros(num_frames, num_objects, 2, dtype=torch.long),
            ),
            dict_key="bench",
            batch_size=[num_frames],
        )
        return loss(model(datapoint), batch.masks)[CORE_LOSS_KEY]

    return step


def memory_account(
    module_kwargs: Mapping[str, Any],
    image_size: int,
    num_frames: int,
    num_objects: int,
    option_sets: Mapping[str, Mapping[str, Any]] = OPTION_SETS,
    reduced_frames: int = 3,
    bf16: bool = True,
    ddp: bool = True,
    official: bool = True,
    seed: int = 0,
    prompts: PromptConfig = ACCOUNT_PROMPTS,
) -> list[dict[str, Any]]:
    """The memory account of one training step per option set (see the module docstring), in GB (1e9 bytes).

    ``module_kwargs``: :class:`~samlab.models.sam2.module.SAM2VideoModule` arguments of the recipe (a checkpoint
    is not loaded: values do not change the account); each option set updates them; ``prompts`` draw the plan of
    both sides (by default the recipe's heaviest). Returns one row per option set: ``weights``, ``gradients``,
    ``optimizer``, ``ddp_buckets``, ``saved_per_frame``, ``saved`` (extrapolated to ``num_frames``),
    ``saved_direct`` (the fake step at ``num_frames``), ``peak`` and, for the option sets the official trainer
    has, ``official_saved`` and ``official_peak``.
    """
    from samlab.models.sam2.model import checkpointed_modules
    from samlab.models.sam2.module import SAM2VideoModule

    if not 1 <= reduced_frames < num_frames:
        raise ValueError(f"reduced_frames must be in [1, {num_frames}), got {reduced_frames}")
    batches = {t: synthetic_batch(t, num_objects, image_size) for t in (reduced_frames, reduced_frames + 1, num_frames)}
    rows = []
    for name, options in option_sets.items():
        kwargs = {**module_kwargs, **options, "image_size": image_size, "checkpoint": None}
        module = SAM2VideoModule(**kwargs)
        step = samlab_step(module, prompts, seed)
        checkpointed = checkpointed_modules(
            module.model, kwargs.get("checkpoint_image_encoder", False), kwargs.get("checkpoint_memory", False)
        )
        saved = {t: _saved_bytes_of_step(step, module.model, b, checkpointed, bf16) for t, b in batches.items()}
        row = _row(name, parameter_bytes(module.model, ddp), saved, reduced_frames, num_frames)
        if official and set(options) <= OFFICIAL_OPTIONS:
            oracle = official_model(module, prompts, bool(options.get("freeze_image_encoder")), seed)
            saved_official = {
                t: _saved_bytes_of_step(official_step(oracle, module.loss), oracle, b, [], bf16)
                for t, b in batches.items()
            }
            official_row = _row(name, parameter_bytes(oracle, ddp), saved_official, reduced_frames, num_frames)
            row["official_saved"] = official_row["saved"]
            row["official_peak"] = official_row["peak"]
        rows.append(row)
    return rows


def _row(name: str, params: dict[str, int], saved: dict[int, int], reduced: int, frames: int) -> dict[str, Any]:
    per_frame = saved[reduced + 1] - saved[reduced]
    extrapolated = saved[reduced] + (frames - reduced) * per_frame
    fixed = params["weights"] + params["gradients"] + params["optimizer"] + params["ddp_buckets"]
    return {
        "option_set": name,
        "trainable_params_m": round(params["trainable_params"] / 1e6, 2),
        "weights": round(params["weights"] / GB, 3),
        "gradients": round(params["gradients"] / GB, 3),
        "optimizer": round(params["optimizer"] / GB, 3),
        "ddp_buckets": round(params["ddp_buckets"] / GB, 3),
        "saved_per_frame": round(per_frame / GB, 3),
        "saved": round(extrapolated / GB, 3),
        "saved_direct": round(saved[frames] / GB, 3),
        "peak": round((fixed + extrapolated) / GB, 3),
    }


def recipe_settings(config: str | os.PathLike[str]) -> dict[str, Any]:
    """What the account needs from a `samlab fit` YAML of :class:`~samlab.models.sam2.module.SAM2VideoModule`:
    ``module_kwargs`` (``model.init_args``), ``image_size``, ``num_frames``, ``num_objects`` (the data's
    ``max_num_objects``), ``bf16`` (``trainer.precision`` is bf16) and ``ddp`` (a DDP strategy).
    Raises :class:`~samlab.errors.DataError` naming the file when it is not such a config."""
    import yaml

    from samlab.errors import DataError

    path = Path(config)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise DataError(path, f"cannot read the config ({err})") from None
    model = (data or {}).get("model") or {}
    if not str(model.get("class_path", "")).endswith("SAM2VideoModule"):
        raise DataError(path, f"model.class_path is {model.get('class_path')!r}, expected a SAM2VideoModule recipe")
    init = dict(model.get("init_args") or {})
    data_args = ((data.get("data") or {}).get("init_args")) or {}
    trainer = data.get("trainer") or {}
    return {
        "module_kwargs": init,
        "image_size": int(data_args.get("image_size", init.get("image_size", 1024))),
        "num_frames": int(data_args.get("num_frames", 8)),
        "num_objects": int(data_args.get("max_num_objects", 3)),
        "bf16": "bf16" in str(trainer.get("precision", "32")),
        "ddp": "ddp" in str(trainer.get("strategy", "")),
    }


def bench_memory(
    config: str | os.PathLike[str],
    option_sets: Sequence[str] | None = None,
    reduced_frames: int = 3,
    num_frames: int | None = None,
    num_objects: int | None = None,
    official: bool = True,
) -> dict[str, Any]:
    """:func:`memory_account` of the recipe ``config`` for the named :data:`OPTION_SETS` (all when None), at the
    recipe's frames and objects unless ``num_frames`` / ``num_objects`` are given. Returns the settings and rows."""
    settings = recipe_settings(config)
    names = list(option_sets) if option_sets else list(OPTION_SETS)
    unknown = [name for name in names if name not in OPTION_SETS]
    if unknown:
        raise ValueError(f"unknown option sets {unknown}; expected some of {sorted(OPTION_SETS)}")
    frames = num_frames or settings["num_frames"]
    objects = num_objects or settings["num_objects"]
    rows = memory_account(
        settings["module_kwargs"],
        settings["image_size"],
        frames,
        objects,
        option_sets={name: OPTION_SETS[name] for name in names},
        reduced_frames=reduced_frames,
        bf16=settings["bf16"],
        ddp=settings["ddp"],
        official=official,
    )
    variant = settings["module_kwargs"].get("variant", "sam2.1_hiera_b+")
    return {
        "variant": variant,
        "image_size": settings["image_size"],
        "num_frames": frames,
        "num_objects": objects,
        "bf16": settings["bf16"],
        "reduced_frames": reduced_frames,
        "rows": rows,
    }

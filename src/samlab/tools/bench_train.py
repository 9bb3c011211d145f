"""`samlab bench train`: training throughput (frames/s) and peak GPU memory of a recipe, through the real Trainer."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from samlab.models.sam2.prompts import PromptConfig, PromptPlan, plan_prompts

_PINNED = {
    "num_init_cond_frames_for_train": 2,
    "rand_init_cond_frames_for_train": False,
    "num_frames_to_correct_for_train": 4,
    "rand_frames_to_correct_for_train": False,
    "num_correction_pt_per_frame": 7,
}
PINNED_PLANS: dict[str, PromptConfig] = {
    # 2 conditioning frames with their GT mask, nothing corrected.
    "mask": PromptConfig(prob_to_use_pt_input_for_train=0.0, **_PINNED),
    # 2 conditioning frames with a box, 4 corrected frames (those 2 and 2 more) with 7 clicks each.
    "box": PromptConfig(prob_to_use_pt_input_for_train=1.0, prob_to_use_box_input_for_train=1.0, **_PINNED),
    # The same with a click instead of a box: clicks only.
    "clicks": PromptConfig(prob_to_use_pt_input_for_train=1.0, prob_to_use_box_input_for_train=0.0, **_PINNED),
}
"""Prompt settings whose plans differ only in the frames drawn; with the plan generator reseeded before every step
(:class:`PinnedPlan`), every step gets the same plan (the same as the official ``SAM2Train`` with the same seed)."""


class PinnedPlan(Callback):
    """Reseeds the SAM 2 module's plan generator (``plan_rng``) with ``seed`` before every training step, so that
    every step is prompted alike (with :data:`PINNED_PLANS` settings: a fixed kind and number of prompts)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        pl_module.plan_rng = np.random.default_rng(self.seed)


class PlanRecorder(Callback):
    """Records the prompt plan each timed training step (after ``warmup`` steps) of a SAM 2 module draws.

    The plan is what ``plan_prompts`` gives for the batch with the module's ``prompts`` and a copy of its
    ``plan_rng`` as it is when the step starts (the step draws its plan first, from that generator). Put it after
    :class:`PinnedPlan`. ``plans``: the distinct plans seen, in order; empty for modules without ``plan_rng``.
    """

    def __init__(self, warmup: int = 5) -> None:
        self.warmup = warmup
        self.plans: list[PromptPlan] = []

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        rng = getattr(pl_module, "plan_rng", None)
        if rng is None or trainer.global_step < self.warmup:
            return
        plan = plan_prompts(batch.num_frames, pl_module.prompts, rng=copy.deepcopy(rng), training=True)
        if plan not in self.plans:
            self.plans.append(plan)


class ThroughputMeter(Callback):
    """Times training steps after ``warmup`` steps: frames (``T * B`` of each batch) per second and peak memory.

    Results land in ``results`` at the end of training: ``frames_per_s``, ``steps_per_s``, ``s_per_step``,
    ``steps`` (timed), ``data_s_per_step`` (the mean time from the end of a timed step to the start of the next:
    fetching and moving the next batch, in the timed window), ``peak_gpu_memory_gb`` (None on CPU).
    """

    def __init__(self, warmup: int = 5) -> None:
        self.warmup = warmup
        self.frames = 0
        self.steps = 0
        self.start: float | None = None
        self.step_end: float | None = None
        self.data_s = 0.0
        self.results: dict[str, Any] = {}

    def _sync(self, pl_module: LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self._sync(pl_module)
            if pl_module.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(pl_module.device)
            self.start = time.perf_counter()
        elif self.step_end is not None:
            self.data_s += time.perf_counter() - self.step_end

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.start is not None:
            self.frames += batch.num_frames * batch.batch_size
            self.steps += 1
            self.step_end = time.perf_counter()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._sync(pl_module)
        if self.start is None or self.steps == 0:
            raise RuntimeError(f"bench train: no step after the {self.warmup} warm-up steps; raise --steps")
        elapsed = time.perf_counter() - self.start
        peak = None
        if pl_module.device.type == "cuda":
            peak = round(torch.cuda.max_memory_allocated(pl_module.device) / 2**30, 3)
        self.results = {
            "frames_per_s": self.frames / elapsed,
            "steps_per_s": self.steps / elapsed,
            "s_per_step": elapsed / self.steps,
            "steps": self.steps,
            "data_s_per_step": self.data_s / max(self.steps - 1, 1),
            "peak_gpu_memory_gb": peak,
        }


def bench_train(
    config: str,
    steps: int = 20,
    warmup: int = 5,
    overrides: Sequence[str] = (),
    pinned_plan: str | None = None,
    cached_batch: bool = False,
) -> dict[str, Any]:
    """Run ``warmup + steps`` training steps of ``config`` (a `samlab fit` YAML, with extra CLI ``overrides`` such as
    ``--data.init_args.root=...``) without validation, checkpoints or loggers, and return :class:`ThroughputMeter`'s
    figures plus the device, precision, batch shape and ``prompt_plans`` (SAM 2: the distinct prompt plans of the
    timed steps, :class:`PlanRecorder`; None for other modules).

    ``pinned_plan``: a name of :data:`PINNED_PLANS` (SAM 2 recipes): every step gets that prompt plan
    (``prompt_plans`` is 1). ``cached_batch``: the first batch of the data is loaded once, before the timed window,
    and given to every step, so that the figure is the model step's (``data_s_per_step`` is then only Lightning's
    own time between steps).
    """
    if pinned_plan is not None and pinned_plan not in PINNED_PLANS:
        raise ValueError(f"unknown pinned plan {pinned_plan!r}; expected one of {sorted(PINNED_PLANS)}")
    from samlab.lightning_cli import SamlabCLI

    cli = SamlabCLI(
        run=False,
        save_config_callback=None,
        args=[
            "--config",
            config,
            *overrides,
            f"--trainer.max_steps={warmup + steps}",
            "--trainer.limit_val_batches=0",
            "--trainer.num_sanity_val_steps=0",
            "--trainer.logger=false",
            "--trainer.enable_checkpointing=false",
            "--trainer.callbacks=[]",
        ],
    )
    meter, recorder = ThroughputMeter(warmup=warmup), PlanRecorder(warmup=warmup)
    cli.trainer.callbacks.append(meter)
    if pinned_plan is not None:
        cli.model.prompts = PINNED_PLANS[pinned_plan]
        cli.trainer.callbacks.append(PinnedPlan())
    cli.trainer.callbacks.append(recorder)
    data = cli.datamodule
    if cached_batch:
        data.setup("fit")
        first = next(iter(data.train_dataloader()))
        cached = torch.utils.data.DataLoader([first] * (warmup + steps), batch_size=None, collate_fn=_same)
        # fit with the data module still: its batch hooks (uint8 frames normalised on the device) run as in training
        data.train_dataloader = lambda: cached
    cli.trainer.fit(cli.model, datamodule=data)
    return meter.results | {
        "prompt_plans": len(recorder.plans) if hasattr(cli.model, "plan_rng") else None,
        "pinned_plan": pinned_plan,
        "cached_batch": cached_batch,
        "device": str(cli.model.device.type),
        "precision": str(cli.trainer.precision),
        "num_frames": getattr(data, "num_frames", None),
        "batch_size": getattr(data, "batch_size", None),
        "image_size": getattr(data, "image_size", None),
    }


def _same(batch: Any) -> Any:
    return batch

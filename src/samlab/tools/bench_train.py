"""`samlab bench train`: training throughput (frames/s) and peak GPU memory of a recipe, through the real Trainer."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from samlab.models.sam2.prompts import PromptConfig

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


class ThroughputMeter(Callback):
    """Times training steps after ``warmup`` steps: frames (``T * B`` of each batch) per second and peak memory.

    Results land in ``results`` at the end of training: ``frames_per_s``, ``steps_per_s``, ``s_per_step``,
    ``steps`` (timed), ``peak_gpu_memory_gb`` (None on CPU).
    """

    def __init__(self, warmup: int = 5) -> None:
        self.warmup = warmup
        self.frames = 0
        self.steps = 0
        self.start: float | None = None
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

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.start is not None:
            self.frames += batch.num_frames * batch.batch_size
            self.steps += 1

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
    figures plus the device, precision and batch shape.

    ``pinned_plan``: a name of :data:`PINNED_PLANS` (SAM 2 recipes): every step gets that prompt plan.
    ``cached_batch``: the first batch of the data is loaded once and given to every step, so that the figure is the
    model step's (data loading out of the timed window).
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
    meter = ThroughputMeter(warmup=warmup)
    cli.trainer.callbacks.append(meter)
    if pinned_plan is not None:
        cli.model.prompts = PINNED_PLANS[pinned_plan]
        cli.trainer.callbacks.append(PinnedPlan())
    if cached_batch:
        cli.datamodule.setup("fit")
        first = next(iter(cli.datamodule.train_dataloader()))
        loader = torch.utils.data.DataLoader([first] * (warmup + steps), batch_size=None, collate_fn=_same)
        cli.trainer.fit(cli.model, train_dataloaders=loader)
    else:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    data = cli.datamodule
    return meter.results | {
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

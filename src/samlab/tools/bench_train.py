"""`samlab bench train`: training throughput (frames/s) and peak GPU memory of a recipe, through the real Trainer."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


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


def bench_train(config: str, steps: int = 20, warmup: int = 5, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run ``warmup + steps`` training steps of ``config`` (a `samlab fit` YAML, with extra CLI ``overrides`` such as
    ``--data.init_args.root=...``) without validation, checkpoints or loggers, and return :class:`ThroughputMeter`'s
    figures plus the device, precision and batch shape."""
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
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    data = cli.datamodule
    return meter.results | {
        "device": str(cli.model.device.type),
        "precision": str(cli.trainer.precision),
        "num_frames": getattr(data, "num_frames", None),
        "batch_size": getattr(data, "batch_size", None),
        "image_size": getattr(data, "image_size", None),
    }

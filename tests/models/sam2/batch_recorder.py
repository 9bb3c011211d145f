"""A callback for the training-run tests: appends one JSON line per training batch (step, epoch, videos, lr)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


class RecordBatches(Callback):
    """Appends ``{"step", "epoch", "videos", "lr"}`` of every training batch to ``path`` (JSON lines), before the step
    runs: the batch a run trains on at each step and the learning rate it uses."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        lr = max(group["lr"] for group in trainer.optimizers[0].param_groups)
        row = {"step": trainer.global_step, "epoch": trainer.current_epoch, "videos": list(batch.video_names), "lr": lr}
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

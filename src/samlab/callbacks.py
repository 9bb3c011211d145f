"""Callbacks shipped with samlab's recipes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger


class JandFReport(Callback):
    """Prints the held-out J&F of the model before and after ``fit``: ``J&F before training: X`` and
    ``J&F after training: Y`` (percent, the validation videos of the data module).

    The module must provide ``vos_scores(dataloader) -> dict`` with a ``"J&F"`` entry (as ``SAM2VideoModule``).
    The scores are also kept in ``before`` and ``after``.
    """

    def __init__(self) -> None:
        self.before: dict[str, float] | None = None
        self.after: dict[str, float] | None = None

    def _scores(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float]:
        datamodule = trainer.datamodule
        # Outside the Trainer loops: apply the data module's device-side step (normalisation) by hand.
        batches = (
            datamodule.on_after_batch_transfer(batch.to(pl_module.device), 0) for batch in datamodule.val_dataloader()
        )
        return pl_module.vos_scores(batches)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.before = self._scores(trainer, pl_module)
        if trainer.is_global_zero:
            print(f"J&F before training: {self.before['J&F']:.2f}", flush=True)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.after = self._scores(trainer, pl_module)
        if trainer.is_global_zero:
            print(f"J&F after training: {self.after['J&F']:.2f}", flush=True)


def log_image(trainer: Trainer, key: str, image: np.ndarray, caption: str) -> None:
    """Log ``image`` (``[H, W, 3]`` uint8 RGB) under ``key`` to every logger of ``trainer`` that takes images:
    W&B (``log_image``, with ``caption``) and TensorBoard (``add_image``); other loggers are left out."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], caption=[caption], step=trainer.global_step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, trainer.global_step, dataformats="HWC")


class ValidationImages(Callback):
    """Logs a few validation samples as images (W&B and TensorBoard) at every validation.

    The module says what to draw: ``validation_images(batch, outputs) -> list[(caption, image)]`` with ``[H, W, 3]``
    uint8 images (mask overlays with prompts drawn; for video a strip of frames), ``outputs`` being what its
    ``validation_step`` returned. Images of the first ``num_batches`` batches are logged as ``val_samples/<i>``.
    """

    def __init__(self, num_batches: int = 2) -> None:
        self.num_batches = num_batches

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        make = getattr(pl_module, "validation_images", None)
        if batch_idx >= self.num_batches or trainer.sanity_checking or not trainer.is_global_zero or make is None:
            return
        for i, (caption, image) in enumerate(make(batch, outputs)):
            log_image(trainer, f"val_samples/{batch_idx}_{i}", image, caption)


class GradNormMonitor(Callback):
    """Logs gradient norms every ``log_every_n_steps`` of the Trainer: ``grad_norm/total`` and one
    ``grad_norm/<part>`` per part of the model (parameter names cut to their first ``depth`` components, e.g.
    ``model.image_encoder``). Norms are of the gradients the optimiser is about to use (after AMP unscaling)."""

    def __init__(self, norm_type: float = 2.0, depth: int = 2) -> None:
        self.norm_type = norm_type
        self.depth = depth

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        if trainer.global_step % max(trainer.log_every_n_steps, 1) != 0:
            return
        parts: dict[str, list[torch.Tensor]] = {}
        for name, param in pl_module.named_parameters():
            if param.grad is not None:
                part = ".".join(name.split(".")[: self.depth])
                parts.setdefault(part, []).append(torch.linalg.vector_norm(param.grad.detach(), self.norm_type))
        if not parts:
            return
        norms = {part: torch.linalg.vector_norm(torch.stack(values), self.norm_type) for part, values in parts.items()}
        total = torch.linalg.vector_norm(torch.stack(list(norms.values())), self.norm_type)
        logged = {f"grad_norm/{part}": value for part, value in norms.items()} | {"grad_norm/total": total}
        pl_module.log_dict(logged, on_step=True, on_epoch=False)

"""Callbacks shipped with samlab's recipes."""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from samlab.runs import LAST_CHECKPOINT


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


class ResumeOnSignal(Callback):
    """Makes a stopped training run resumable at the exact step (samlab's CLI adds it to every run).

    - Ctrl-C (SIGINT) is handled like SIGTERM, the signal SLURM sends before a preemption or the time limit:
      Lightning finishes the current training step (on every process) and stops, then this callback writes
      ``last.ckpt`` into the run's checkpoint folder and the process exits with status 128 + the signal number. A
      second Ctrl-C stops at once, without a checkpoint.
    - Every checkpoint also holds the RNG states of Python, NumPy and torch (those of the first process), restored
      just before the first training step after a resume: a resumed run draws the prompts of an uninterrupted one.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous_sigint: Any = None
        self._rng_to_restore: dict[str, Any] | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning handles SIGTERM in the main thread only, and so does this.
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.SIG_IGN, None):
            raise KeyboardInterrupt
        self.received = signal.SIGINT
        print(f"Ctrl-C: finishing this step, then writing {LAST_CHECKPOINT} (Ctrl-C again: stop now)", flush=True)
        signal.raise_signal(signal.SIGTERM)

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore_sigint()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore_sigint()
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        path = last_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        number = self.received or signal.SIGTERM
        if trainer.is_global_zero:
            print(
                f"stopped by {signal.Signals(number).name} at step {trainer.global_step} (epoch "
                f"{trainer.current_epoch}); wrote {path}; resume with the same command and --ckpt_path last",
                flush=True,
            )
        exception.code = 128 + number

    def state_dict(self) -> dict[str, Any]:
        # NumPy's key as a tensor: Lightning loads checkpoints with torch.load(weights_only=True).
        kind, key, position, has_gauss, gauss = np.random.get_state()
        numpy_state = (kind, torch.from_numpy(key.astype(np.int64)), int(position), int(has_gauss), float(gauss))
        states = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return {"rng": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rng_to_restore = state_dict.get("rng")

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        states, self._rng_to_restore = self._rng_to_restore, None
        if states is None:
            return
        random.setstate(states["python"])
        kind, key, position, has_gauss, gauss = states["numpy"]
        np.random.set_state((kind, key.numpy().astype(np.uint32), position, has_gauss, gauss))
        torch.set_rng_state(states["torch"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


def last_checkpoint_path(trainer: Trainer) -> Path:
    """Where ``trainer``'s run keeps ``last.ckpt``: the folder of its (first) ModelCheckpoint, else
    ``<log_dir>/checkpoints``."""
    callback = trainer.checkpoint_callback
    if callback is not None and getattr(callback, "dirpath", None):
        return Path(callback.dirpath) / LAST_CHECKPOINT
    return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints" / LAST_CHECKPOINT


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar on a terminal; plain progress lines when stdout is not one (a log file, a pipe).

    Plain lines, every ``every_n_steps`` training steps and after each validation::

        step 120/250 | epoch 9 | train/loss 1.234 | 2.41 it/s | ETA 0:00:54
        validation at step 250 | val/J&F 26.61 | val/J 24.12 | val/F 29.10

    ``plain``: None decides from ``sys.stdout.isatty()``; True / False force either. Runs bounded by
    ``max_steps`` only (``max_epochs: -1``) show ``Epoch N`` rather than Lightning's ``Epoch N/-2``.
    """

    def __init__(self, every_n_steps: int = 10, plain: bool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.plain = plain
        self._last_time: float | None = None
        self._last_step = 0

    def _plain(self) -> bool:
        return not sys.stdout.isatty() if self.plain is None else self.plain

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self._plain():
            self.disable()

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is not None and self.trainer.max_epochs < 0:
            return f"{f'Epoch {current_epoch}':{len(self.validation_description)}}"
        return super()._get_train_description(current_epoch)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_time, self._last_step = time.monotonic(), trainer.global_step

    def _total_steps(self, trainer: Trainer) -> int | None:
        if trainer.max_steps is not None and trainer.max_steps > 0:
            return trainer.max_steps
        batches = trainer.num_training_batches
        if trainer.max_epochs is None or trainer.max_epochs < 0 or batches == float("inf"):
            return None
        return int(trainer.max_epochs * batches // max(trainer.accumulate_grad_batches, 1))

    def _format(self, metrics: dict[str, Any]) -> list[str]:
        return [
            f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}" for key, value in metrics.items()
        ]

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        step = trainer.global_step
        if not self._plain() or not trainer.is_global_zero or step % self.every_n_steps or step == self._last_step:
            return
        now = time.monotonic()
        rate = (step - self._last_step) / max(now - (self._last_time or now), 1e-9)
        self._last_time, self._last_step = now, step
        total = self._total_steps(trainer)
        parts = [f"step {step}/{total}" if total else f"step {step}", f"epoch {trainer.current_epoch}"]
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        parts += self._format(metrics)
        parts.append(f"{rate:.2f} it/s")
        if total:
            parts.append(f"ETA {_duration(max(total - step, 0) / rate)}")
        print(" | ".join(parts), flush=True)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._plain() or not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("val") and getattr(value, "numel", lambda: 1)() == 1
        }
        print(" | ".join([f"validation at step {trainer.global_step}", *self._format(metrics)]), flush=True)

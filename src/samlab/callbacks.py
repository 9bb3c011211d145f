"""Callbacks shipped with samlab's recipes."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer


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

"""samlab's LightningCLI: model and data in subclass mode, shared values linked, config saved next to checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback


class SaveConfigNextToCheckpoints(SaveConfigCallback):
    """Saves the resolved config in the log folder (as Lightning does) and in every checkpoint folder of the run, and
    logs it to every logger (the W&B run config, TensorBoard and CSV hyper-parameters) under ``config``."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Checkpoint folders are only resolved once training starts.
        if not trainer.is_global_zero:
            return
        for callback in trainer.checkpoint_callbacks:
            if callback.dirpath:
                Path(callback.dirpath).mkdir(parents=True, exist_ok=True)
                target = Path(callback.dirpath) / self.config_filename
                self.parser.save(self.config, target, skip_none=False, overwrite=True, multifile=False)


class SamlabCLI(LightningCLI):
    """``samlab fit|validate|test|predict``: any LightningModule / LightningDataModule given by ``class_path``.

    ``data.init_args.image_size`` is linked to ``model.init_args.image_size``: recipes state it once, on the data
    side. The module's ``configure_optimizers`` is used as is (no ``--optimizer`` / ``--lr_scheduler`` groups).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_callback", SaveConfigNextToCheckpoints)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(subclass_mode_model=True, subclass_mode_data=True, auto_configure_optimizers=False, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.init_args.image_size", "model.init_args.image_size")

"""samlab's LightningCLI: model and data in subclass mode, shared values linked, config saved next to checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from samlab.error_reports import explain_build_error, explain_parse_error


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


class SamlabArgumentParser(LightningArgumentParser):
    """LightningCLI's parser, whose errors about a wrong key end with the key, "did you mean" and the fix.

    Other errors are jsonargparse's own.
    """

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        explained = explain_parse_error(message, self._known_keys(), command=self.prog.split()[-1])
        if explained is None or not self.exit_on_error:
            super().error(message, ex)
        raise explained

    def _known_keys(self) -> list[str]:
        keys = [option.lstrip("-") for option in self._option_string_actions if option.startswith("--")]
        subcommands = self._subcommands_action
        for parser in subcommands._name_parser_map.values() if subcommands else []:
            keys += parser._known_keys() if isinstance(parser, SamlabArgumentParser) else []
        return keys


class SamlabCLI(LightningCLI):
    """``samlab fit|validate|test|predict``: any LightningModule / LightningDataModule given by ``class_path``.

    ``data.init_args.image_size`` is linked to ``model.init_args.image_size`` and to the ``resolution`` of the data's
    ``train_transform`` / ``val_transform`` when given: recipes state it once, on the data side. A wrong key or a
    model, data module or trainer that cannot be built ends in a :class:`~samlab.errors.ConfigError` (cause,
    config key, fix). The module's ``configure_optimizers`` is used as is (no ``--optimizer`` / ``--lr_scheduler``
    groups).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_callback", SaveConfigNextToCheckpoints)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_class", SamlabArgumentParser)
        super().__init__(subclass_mode_model=True, subclass_mode_data=True, auto_configure_optimizers=False, **kwargs)

    def instantiate_classes(self) -> None:
        """Build the model, data module and trainer; a failure becomes a :class:`~samlab.errors.ConfigError`
        naming its cause, the config key and the fix (see :mod:`samlab.error_reports`)."""
        try:
            super().instantiate_classes()
        except Exception as err:
            config = self.config[self.subcommand] if self.subcommand else self.config
            raise explain_build_error(err, config, command=self.subcommand or "fit") from err

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.init_args.image_size", "model.init_args.image_size")
        # The transforms' input size is the data's image_size too (the SAM-on-COCO recipes state neither twice).
        for transform in ("train_transform", "val_transform"):
            parser.link_arguments("data.init_args.image_size", f"data.init_args.{transform}.init_args.resolution")

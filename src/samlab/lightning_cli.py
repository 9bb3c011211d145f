"""samlab's LightningCLI: model and data in subclass mode, shared values linked, config saved next to checkpoints,
one run folder per run (see :mod:`samlab.runs`)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, NoReturn

import yaml
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from samlab.callbacks import ResumeOnSignal
from samlab.error_reports import explain_build_error, explain_parse_error
from samlab.runs import LAST_CHECKPOINT, AtomicCheckpointIO, newest_last_checkpoint, next_version, run_folder_of


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

    Runs: every TensorBoard / CSV logger writes into one run folder ``<default_root_dir>/version_<N>`` (a logger
    without ``save_dir`` gets ``trainer.default_root_dir``), named in the first lines of the output.
    ``--ckpt_path last`` is the newest ``last.ckpt`` of those run folders; ``fit`` from a checkpoint of a run folder
    logs into that folder again. Checkpoints are written atomically (:class:`~samlab.runs.AtomicCheckpointIO`), and
    :class:`~samlab.callbacks.ResumeOnSignal` writes ``last.ckpt`` on Ctrl-C / SIGTERM.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_callback", SaveConfigNextToCheckpoints)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        trainer_defaults = dict(kwargs.pop("trainer_defaults", None) or {})
        trainer_defaults.setdefault("callbacks", [ResumeOnSignal()])
        kwargs.setdefault("parser_class", SamlabArgumentParser)
        super().__init__(
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            trainer_defaults=trainer_defaults,
            **kwargs,
        )

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

    def before_instantiate_classes(self) -> None:
        """Place the run: loggers' folder and version, and ``--ckpt_path last`` (see the class docstring)."""
        if self.subcommand is None:  # run=False: the caller instantiates and runs what it needs
            return
        config = self.config[self.subcommand]
        root = Path(config.trainer.default_root_dir or ".")
        loggers = _run_loggers(config.trainer.logger)
        for entry in loggers:
            if entry.init_args.save_dir is None:
                entry.init_args.save_dir = str(root)
        run_roots = [Path(entry.init_args.save_dir) / (entry.init_args.name or "") for entry in loggers]
        search_root = run_roots[0] if run_roots else root / "lightning_logs"
        if config.get("ckpt_path") == "last":
            checkpoint = f"checkpoints/{LAST_CHECKPOINT}"
            config.ckpt_path = newest_last_checkpoint(search_root)
            if config.ckpt_path is None and self.subcommand != "fit":
                self.parser.error(f"--ckpt_path last: no run of {search_root} has a {checkpoint}")
            if config.ckpt_path is None:
                _say(f"--ckpt_path last: no run of {search_root} has a {checkpoint} yet: starting a new run")
            else:
                config.ckpt_path = str(config.ckpt_path)
        if not loggers:
            return
        resumed = None
        if self.subcommand == "fit" and config.get("ckpt_path"):
            resumed = run_folder_of(config.ckpt_path, run_roots[0])
        version = int(resumed.name.split("_")[1]) if resumed is not None else next_version(run_roots)
        for entry in loggers:
            if entry.init_args.version is None:
                entry.init_args.version = version
        folder = run_roots[0] / f"version_{loggers[0].init_args.version}"
        if resumed is not None:
            _say(f"run folder: {folder} (resuming {config.ckpt_path})")
        else:
            _say(f"run folder: {folder}")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Lightning's trainer, with :class:`~samlab.runs.AtomicCheckpointIO` unless a checkpoint IO is configured."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer


def _say(message: str) -> None:
    """Print ``message`` on the first process only (every process runs the CLI under DDP)."""
    if rank_zero_only.rank == 0:
        print(message, flush=True)


def _run_loggers(logger_config: Any) -> list[Any]:
    """The ``class_path`` / ``init_args`` entries of ``trainer.logger`` that write into run folders (TensorBoard and
    CSV loggers: they have ``save_dir``, ``name`` and ``version``)."""
    entries = logger_config if isinstance(logger_config, list) else [logger_config]
    found = []
    for entry in entries:
        class_path = getattr(entry, "class_path", None)
        if class_path is None:
            continue
        module, _, name = class_path.rpartition(".")
        logger_class = getattr(importlib.import_module(module), name)
        if issubclass(logger_class, (TensorBoardLogger, CSVLogger)):
            found.append(entry)
    return found

"""Loggers of samlab's recipes.

:class:`TensorBoardLogger` and :class:`CSVLogger` are Lightning's with the run folder as default: ``save_dir`` is
the trainer's ``default_root_dir`` (samlab's CLI fills it in) and ``name`` is empty, so a run logs into
``<default_root_dir>/version_<N>/``, the folder that also holds its checkpoints (see :mod:`samlab.runs`).
"""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger


def _given_save_dir(save_dir: str | None, logger: str) -> str:
    if save_dir is None:
        raise ValueError(
            f"{logger}: save_dir is not set; give it, or run through `samlab fit`, which sets it to "
            "trainer.default_root_dir"
        )
    return save_dir


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger writing into the run folder ``<save_dir>/<name>/version_<N>``.

    ``save_dir``: None means the trainer's ``default_root_dir`` (set by samlab's CLI); ``name``: ``""`` (no
    sub-folder). Other arguments: Lightning's ``TensorBoardLogger``.
    """

    def __init__(self, save_dir: str | None = None, name: str = "", **kwargs: Any) -> None:
        super().__init__(_given_save_dir(save_dir, "TensorBoardLogger"), name=name, **kwargs)


class CSVLogger(LightningCSVLogger):
    """Lightning's CSV logger writing ``metrics.csv`` into the run folder ``<save_dir>/<name>/version_<N>``.

    ``save_dir``: None means the trainer's ``default_root_dir`` (set by samlab's CLI); ``name``: ``""``. Other
    arguments: Lightning's ``CSVLogger``.
    """

    def __init__(self, save_dir: str | None = None, name: str = "", **kwargs: Any) -> None:
        super().__init__(_given_save_dir(save_dir, "CSVLogger"), name=name, **kwargs)


class WandbLogger(LightningWandbLogger):
    """Lightning's W&B logger, offline unless the user turns it on.

    ``offline=None`` (the default) decides from the environment: online when ``WANDB_MODE`` is ``online`` or ``run``,
    or when a W&B sweep agent started the run (``WANDB_SWEEP_ID`` set); offline otherwise (no account needed; sync
    later with ``wandb sync``). ``WANDB_MODE=disabled`` turns logging off. Lightning's own logger with
    ``offline=True`` would override ``WANDB_MODE`` instead. Other arguments: Lightning's ``WandbLogger``.
    """

    def __init__(self, *args: Any, offline: bool | None = None, **kwargs: Any) -> None:
        if offline is None:
            mode = os.environ.get("WANDB_MODE", "").lower()
            online = mode in ("online", "run", "disabled") or (not mode and "WANDB_SWEEP_ID" in os.environ)
            offline = not online
        super().__init__(*args, offline=offline, **kwargs)

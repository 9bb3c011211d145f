"""Loggers of samlab's recipes."""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger


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

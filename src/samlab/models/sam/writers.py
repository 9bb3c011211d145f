"""Writing SAM predictions as a COCO results file (``result.segm.json``), the format COCO-style servers take."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter


class COCOResultsWriter(BasePredictionWriter):
    """Collects the COCO results entries that ``SAMPromptModule.predict_step`` returns and writes them, at the end
    of prediction, as one JSON list to ``output_dir / filename``: ``{"image_id", "category_id", "segmentation"
    (RLE with str counts), "score"}`` per instance, loadable with pycocotools' ``COCO.loadRes``. Under
    ``torch.distributed`` the ranks' entries are gathered and rank 0 writes the file.
    """

    def __init__(self, output_dir: str | Path = "predictions", filename: str = "result.segm.json") -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.filename = filename
        self.results: list[dict[str, Any]] = []

    @property
    def path(self) -> Path:
        """Where the results file goes."""
        return self.output_dir / self.filename

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.results = []

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: list[dict[str, Any]],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        self.results.extend(prediction)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        results = self.results
        if dist.is_available() and dist.is_initialized():
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, results)
            results = [r for part in parts for r in part]
        if trainer.is_global_zero:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(results))
            tmp.replace(self.path)  # atomic: a reader never sees half a file

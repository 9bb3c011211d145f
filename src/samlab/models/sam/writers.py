"""Writing SAM predictions as COCO results files (``result.segm.json``, ``result.bbox.json``), the format COCO-style
servers take."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from samlab.metrics.coco import bbox_results


class COCOResultsWriter(BasePredictionWriter):
    """Collects the COCO results entries that ``SAMPromptModule.predict_step`` returns and writes them, at the end
    of prediction, as one JSON list to ``output_dir / filename``: ``{"image_id", "category_id", "segmentation"
    (RLE with str counts), "score"}`` per instance (no ``bbox``, so pycocotools takes the mask's area), loadable
    with pycocotools' ``COCO.loadRes``; and, unless ``bbox_filename`` is None, the same entries with the masks'
    boxes ``bbox`` ``[x, y, w, h]`` instead of their masks to ``output_dir / bbox_filename`` (for ``--iou-type
    bbox``). Under ``torch.distributed`` the ranks' entries are gathered and rank 0 writes the files.
    """

    def __init__(
        self,
        output_dir: str | Path = "predictions",
        filename: str = "result.segm.json",
        bbox_filename: str | None = "result.bbox.json",
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.filename = filename
        self.bbox_filename = bbox_filename
        self.results: list[dict[str, Any]] = []

    @property
    def path(self) -> Path:
        """Where the mask results file goes."""
        return self.output_dir / self.filename

    @property
    def bbox_path(self) -> Path | None:
        """Where the box results file goes (None: not written)."""
        return None if self.bbox_filename is None else self.output_dir / self.bbox_filename

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
            files = [(self.path, results)]
            if self.bbox_path is not None:
                files.append((self.bbox_path, bbox_results(results)))
            for path, entries in files:
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(json.dumps(entries))
                tmp.replace(path)  # atomic: a reader never sees half a file

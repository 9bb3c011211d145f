"""Stage 2 of DirectSAM: ``samlab predict`` writes one pseudo-label JSON per image, resumably."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from samlab.data.boundaries.batch import BoundaryBatch
from samlab.data.boundaries.dataset import pseudo_label_record
from samlab.masks import encode_rle


def done_names(output_dir: str | Path) -> set[str]:
    """Names (paths relative to ``output_dir``, without ``.json``) of the pseudo-labels already written."""
    root = Path(output_dir)
    return {str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.json")} if root.is_dir() else set()


class PseudoLabelWriter(BasePredictionWriter):
    """Writes ``<output_dir>/<name>.json`` for each predicted image in DirectSAM's layout
    (:func:`samlab.data.boundaries.dataset.pseudo_label_record`), both labels at the model resolution as
    DirectSAM's ``pseudo_labeling.py`` stores them: the pseudo-label (probabilities > ``threshold``; its ``source``
    is ``source``, else the checkpoint path, else the module's ``pretrained`` folder) and the human label (the
    batch's target: the dataset's own boundary drawn at the model resolution with the data module's
    ``human_thickness``; its ``source`` is the dataset folder).

    Resumable: at setup it removes the images whose JSON exists from the data module's prediction set (when the
    data set has ``exclude``, as :class:`samlab.data.boundaries.dataset.ReaderBoundaryDataset`), and it never
    overwrites a JSON. Files are written to a temporary name and renamed, so an interrupted run leaves no
    truncated JSON. ``written`` counts the files written by this run.
    """

    def __init__(self, output_dir: str, threshold: float = 0.5, source: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.threshold = threshold
        self.source = source
        self.written = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if stage != "predict" or datamodule is None or not hasattr(datamodule, "dataset"):
            return
        dataset = datamodule.dataset("predict")
        if hasattr(dataset, "exclude"):
            dataset.exclude(done_names(self.output_dir))

    def _model_source(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str:
        if self.source is not None:
            return self.source
        if trainer.ckpt_path:
            return str(trainer.ckpt_path)
        return str(getattr(pl_module, "hparams", {}).get("pretrained") or type(pl_module).__name__)

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: list[torch.Tensor],
        batch_indices: Any,
        batch: BoundaryBatch,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        model_source = self._model_source(trainer, pl_module)
        for i, probabilities in enumerate(prediction):
            path = self.output_dir / f"{batch.names[i]}.json"
            if path.exists():
                continue
            height, width = (int(v) for v in batch.orig_sizes[i].tolist())
            record = pseudo_label_record(
                str(Path(batch.image_paths[i]).resolve()),
                (width, height),
                [(model_source, encode_rle((probabilities > self.threshold).numpy()))],
                [(batch.sources[i], encode_rle((batch.targets[i] > 0.5).cpu().numpy()))],
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".json.tmp{os.getpid()}")
            tmp.write_text(json.dumps(record))
            os.replace(tmp, path)
            self.written += 1

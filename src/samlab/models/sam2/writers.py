"""Writing VOS predictions in the layouts the benchmarks' evaluators read.

- ``davis``: ``<out>/<video>/<frame:05d>.png``, one palette PNG per frame, pixel value = object id (DAVIS, MOSE);
- ``sav``: ``<out>/<video>/<obj:03d>/<frame:05d>.png``, one 0/255 PNG per object and frame (SA-V val/test).

Frame numbers are the original ones (``VideoPrediction.frame_indices``), so SA-V's every-4th-frame annotations
keep their names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from samlab.models.sam2.vos import VideoPrediction

Layout = Literal["davis", "sav"]


def davis_palette() -> list[int]:
    """The 256-colour palette of DAVIS / Pascal VOC label PNGs as a flat ``[r0, g0, b0, r1, …]`` list of 768 ints."""
    palette = []
    for index in range(256):
        r = g = b = 0
        value = index
        # Bits of the index are spread over the high bits of the three channels, 3 bits at a time.
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette.extend((r, g, b))
    return palette


def label_map(masks: np.ndarray, object_ids: Sequence[int]) -> np.ndarray:
    """Per-object masks ``[O, H, W]`` bool → ``[H, W]`` uint8 label map with value ``object_ids[o]``, 0 elsewhere.

    Where masks overlap the smallest object id wins (as SAM 2's ``vos_inference``). Ids must be in ``1..255``.
    """
    labels = np.zeros(masks.shape[1:], dtype=np.uint8)
    for o in sorted(range(len(object_ids)), key=lambda i: object_ids[i], reverse=True):
        labels[masks[o]] = object_ids[o]
    return labels


def write_palette_pngs(prediction: VideoPrediction, output_dir: str | Path) -> list[Path]:
    """Write ``<output_dir>/<video>/<frame:05d>.png`` palette PNGs (value = object id); returns the paths."""
    ids = [int(i) for i in prediction.object_ids]
    bad = [i for i in ids if not 1 <= i <= 255]
    if bad:
        raise ValueError(f"video '{prediction.video_name}': object ids {bad} do not fit a palette PNG (1..255)")
    folder = Path(output_dir) / prediction.video_name
    folder.mkdir(parents=True, exist_ok=True)
    masks = prediction.masks.cpu().numpy()
    palette = davis_palette()
    paths = []
    for t, frame in enumerate(prediction.frame_indices.tolist()):
        image = Image.fromarray(label_map(masks[t], ids), mode="P")
        image.putpalette(palette)
        path = folder / f"{frame:05d}.png"
        image.save(path)
        paths.append(path)
    return paths


def write_object_pngs(prediction: VideoPrediction, output_dir: str | Path) -> list[Path]:
    """Write ``<output_dir>/<video>/<obj:03d>/<frame:05d>.png`` 0/255 PNGs, every object on every frame."""
    folder = Path(output_dir) / prediction.video_name
    masks = prediction.masks.cpu().numpy()
    frames = prediction.frame_indices.tolist()
    paths = []
    for o, object_id in enumerate(prediction.object_ids.tolist()):
        object_folder = folder / f"{object_id:03d}"
        object_folder.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(frames):
            path = object_folder / f"{frame:05d}.png"
            Image.fromarray(masks[t, o].astype(np.uint8) * 255, mode="L").save(path)
            paths.append(path)
    return paths


class VOSMaskWriter(BasePredictionWriter):
    """Lightning callback writing each predicted video (a :class:`VideoPrediction` from ``predict_step``) to disk.

    ``output_dir``: root of the written masks; None: ``<trainer.default_root_dir>/predictions``. ``layout``:
    ``"davis"`` (palette PNG per frame) or ``"sav"`` (binary PNG per object and frame), see the module docstring.
    ``samlab predict`` prints the folder before it starts and the number of videos written when it ends.
    """

    def __init__(self, output_dir: str | Path | None = None, layout: Layout = "davis") -> None:
        super().__init__(write_interval="batch")
        if layout not in ("davis", "sav"):
            raise ValueError(f"unknown mask layout {layout!r}: expected 'davis' or 'sav'")
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.layout = layout
        self.videos_written = 0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.output_dir is None:
            self.output_dir = Path(trainer.default_root_dir) / "predictions"

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.videos_written = 0
        if trainer.is_global_zero:
            print(f"predict: writing {self.layout}-layout masks to {self.output_dir}", flush=True)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        process = f" (process {trainer.global_rank})" if trainer.world_size > 1 else ""
        print(f"predict: wrote the masks of {self.videos_written} videos to {self.output_dir}{process}", flush=True)

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Write one video's masks (``prediction`` is a :class:`VideoPrediction`)."""
        write = write_palette_pngs if self.layout == "davis" else write_object_pngs
        write(prediction, self.output_dir)
        self.videos_written += 1

"""``samlab data browse``: PNGs of a recipe's augmented training samples, to check a data pipeline by eye.

The recipe is read as ``samlab fit --config`` reads it (same parser, links and overrides) but no Trainer is built:
only the data module and, for the prompts, the model. Each PNG is one training sample: its frames side by side,
each object in its own colour (mask overlay, outline and box), and on the first frame the model's training prompts
when it has ``preview_prompts(batch)``: positive clicks green, negative clicks red, box prompts white.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from itertools import count, islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from lightning.pytorch.cli import LightningArgumentParser

from samlab.data.batch import VideoBatch
from samlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from samlab.lightning_cli import SamlabCLI
from samlab.masks import masks_to_boxes
from samlab.progress import track
from samlab.visualize import draw_boxes, draw_points, frame_strip, object_colors, overlay_masks, to_uint8_image

BOX_PROMPT = (255, 255, 255)


class _RecipeCLI(SamlabCLI):
    """:class:`SamlabCLI` that instantiates the data module (and the model when ``with_model``) but no Trainer."""

    def __init__(self, with_model: bool, **kwargs: Any) -> None:
        self.with_model = with_model
        super().__init__(**kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        # LightningCLI warns when both ``args`` and ``sys.argv`` are given; here ``sys.argv`` is `samlab data browse`'s.
        self.config = parser.parse_args(args)

    def instantiate_classes(self) -> None:
        config = self.config.clone()
        if not self.with_model:
            config.model = None
        config.trainer.logger = False  # no Trainer is built, so no run folder: run loggers would have no save_dir
        init = self.parser.instantiate_classes(config)
        self.datamodule = init.data
        self.model = init.model


def load_recipe(
    configs: Sequence[str | os.PathLike[str]], overrides: Sequence[str] = (), with_model: bool = True
) -> tuple[Any, Any]:
    """The ``(datamodule, model)`` of a recipe: ``configs`` YAML files (later ones override earlier ones) and
    ``overrides`` (``--data.init_args.batch_size=2`` style); ``model`` is None unless ``with_model``."""
    args = [arg for config in configs for arg in ("--config", str(config))] + list(overrides)
    cli = _RecipeCLI(with_model, args=args, run=False)
    return cli.datamodule, cli.model


def _transform_stats(datamodule: Any) -> tuple[Sequence[float], Sequence[float]]:
    """The mean/std that made the data module's float training images (the first member's for a mixed module)."""
    member = datamodule.members[0] if hasattr(datamodule, "members") else datamodule
    transform = getattr(getattr(member, "datasets", {}).get("train"), "transform", None)
    return getattr(transform, "mean", IMAGENET_MEAN), getattr(transform, "std", IMAGENET_STD)


def render_sample(
    frames: Sequence[np.ndarray],
    masks: np.ndarray,
    prompts: Sequence[dict[str, Any]] = (),
    alpha: float = 0.5,
) -> np.ndarray:
    """One sample as a ``[H, T * W + gaps, 3]`` uint8 RGB strip.

    ``frames``: ``T`` ``[H, W, 3]`` uint8 RGB frames; ``masks``: ``[T, O, H, W]`` bool; object ``o`` gets colour
    ``object_colors(O)[o]`` (overlay with opacity ``alpha``, outline, and the box of its mask). ``prompts``: one dict
    per object (``"points"`` ``[N, 2]`` xy, ``"point_labels"`` ``[N]`` 1/0, ``"box"`` xyxy or None), drawn on the
    first frame: clicks green (positive) or red (negative), box prompts white.
    """
    colors = object_colors(masks.shape[1])
    drawn = []
    for t, frame in enumerate(frames):
        image = overlay_masks(frame, masks[t], colors, alpha=alpha)
        visible = masks[t].reshape(masks.shape[1], -1).any(axis=1)
        # box corners are pixel edges (exclusive end); the rectangle is drawn through the last pixel inside
        draw_boxes(image, masks_to_boxes(masks[t][visible]) - np.array([0, 0, 1, 1]), colors[visible])
        if t == 0:
            for prompt in prompts:
                box = prompt.get("box")
                if box is not None:
                    x0, y0, x1, y1 = (round(float(v)) for v in box)
                    cv2.rectangle(image, (x0, y0), (x1, y1), BOX_PROMPT, 1)
                points = np.asarray(prompt.get("points", np.zeros((0, 2))), dtype=np.float64).reshape(-1, 2)
                if len(points):
                    draw_points(image, points, np.asarray(prompt["point_labels"]).reshape(-1), radius=1)
        drawn.append(image)
    return frame_strip(drawn, max_frames=len(drawn))


def _as_numpy(value: Any) -> Any:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


def _samples(datamodule: Any, model: Any, alpha: float) -> Iterator[np.ndarray]:
    """Rendered training samples of ``datamodule`` in DataLoader order, epoch after epoch (see
    :func:`render_sample`)."""
    mean, std = _transform_stats(datamodule)
    loader = datamodule.train_dataloader()
    for epoch in count():
        loader.sampler.set_epoch(epoch)
        yield from _epoch_samples(datamodule, loader, model, alpha, mean, std)


def _epoch_samples(
    datamodule: Any, loader: Any, model: Any, alpha: float, mean: Sequence[float], std: Sequence[float]
) -> Iterator[np.ndarray]:
    for batch in loader:
        if not isinstance(batch, VideoBatch):
            raise TypeError(
                f"browse draws VideoBatch samples; {type(datamodule).__name__} gives {type(batch).__name__}"
            )
        # shown before the normalisation below changes batch.images: uint8 as they are, float ones un-normalised
        shown = [[to_uint8_image(frame, mean, std) for frame in batch.images[:, b]] for b in range(batch.batch_size)]
        prompts: list[dict[str, Any]] = []
        if model is not None and hasattr(model, "preview_prompts"):
            prompts = model.preview_prompts(datamodule.on_after_batch_transfer(batch, 0))
        masks = batch.masks.numpy()
        for b in range(batch.batch_size):
            objects = batch.objects_of(b).tolist()
            sample_prompts = [{k: _as_numpy(v) for k, v in prompts[o].items()} for o in objects if o < len(prompts)]
            yield render_sample(shown[b], masks[:, objects], sample_prompts, alpha=alpha)


def browse(
    configs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    n: int = 16,
    overrides: Sequence[str] = (),
    alpha: float = 0.5,
    with_model: bool = True,
    progress: bool = True,
) -> list[Path]:
    """Write ``n`` augmented training samples of a recipe as ``out/sample_000.png``, ... (see :func:`render_sample`).

    ``configs``/``overrides``: the recipe (see :func:`load_recipe`); ``with_model``: build the model to draw its
    ``preview_prompts`` (when it has that method). Samples come from the training DataLoader in order, epoch after
    epoch (new augmentations), so they are those the first training steps would see. Returns the PNG paths.
    """
    datamodule, model = load_recipe(configs, overrides, with_model=with_model)
    datamodule.prepare_data()
    datamodule.setup("fit")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for strip in track(
        islice(_samples(datamodule, model, alpha), n), "browse", total=n, unit="sample", enabled=progress
    ):
        path = folder / f"sample_{len(written):03d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
        written.append(path)
    return written

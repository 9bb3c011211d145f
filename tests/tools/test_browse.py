"""browse: PNGs of a recipe's augmented training samples with masks, boxes and prompts drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import yaml
from tests.test_configs import TINY_MODEL

from samlab.cli import main
from samlab.data.batch import VideoBatch
from samlab.models.sam2.module import SAM2VideoModule
from samlab.tools.browse import load_recipe, render_sample
from samlab.visualize import NEGATIVE_CLICK, POSITIVE_CLICK, object_colors, to_uint8_image

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"


def test_render_sample_draws_masks_boxes_and_prompts() -> None:
    frames = [np.full((20, 30, 3), 100, dtype=np.uint8), np.full((20, 30, 3), 50, dtype=np.uint8)]
    masks = np.zeros((2, 2, 20, 30), dtype=bool)
    masks[:, 0, 2:10, 2:12] = True
    masks[0, 1, 12:18, 15:28] = True  # object 1 only on the first frame
    prompts = [
        {"points": np.array([[6.0, 5.0], [25.0, 3.0]]), "point_labels": np.array([1, 0]), "box": None},
        {"points": np.zeros((0, 2)), "point_labels": np.zeros(0), "box": np.array([14.0, 11.0, 28.0, 18.0])},
    ]
    strip = render_sample(frames, masks, prompts, alpha=1.0)
    assert strip.shape == (20, 30 + 2 + 30, 3)
    colors = object_colors(2)
    first, second = strip[:, :30], strip[:, 32:]
    np.testing.assert_array_equal(first[4, 9], colors[0])  # inside object 0, away from the click
    np.testing.assert_array_equal(first[14, 20], colors[1])
    np.testing.assert_array_equal(first[5, 6], POSITIVE_CLICK)
    np.testing.assert_array_equal(first[3, 25], NEGATIVE_CLICK)
    np.testing.assert_array_equal(first[11, 20], [255, 255, 255])  # the box prompt's top edge
    np.testing.assert_array_equal(first[2, 7], colors[0])  # the mask box's top edge, at its first row
    np.testing.assert_array_equal(second[5, 6], colors[0])  # prompts only on the first frame
    np.testing.assert_array_equal(second[14, 20], [50, 50, 50])  # object 1 absent from the second frame
    np.testing.assert_array_equal(strip[:, 30:32], 255)  # white separator
    half = render_sample(frames[:1], masks[:1], alpha=0.5)
    np.testing.assert_array_equal(half[4, 9], np.round(0.5 * 100 + 0.5 * colors[0].astype(float)))


def quickstart_override(tmp_path: Path) -> Path:
    override = {
        "model": {"init_args": TINY_MODEL},
        "data": {
            "init_args": {
                "root": str(tmp_path / "quickstart"),
                "train_videos": 2,
                "val_videos": 1,
                "frames": 4,
                "frame_size": [48, 64],
                "image_size": 64,
                "num_frames": 3,
                "num_workers": 0,
                "batch_size": 2,
            }
        },
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(override))
    return path


def fake_prompts(self: Any, batch: VideoBatch) -> list[dict[str, Any]]:
    """A positive click on the first pixel of each object's first-frame mask and a negative one at (0, 0)."""
    assert batch.images.dtype == torch.float32  # the model sees normalised images
    out = []
    for o in range(batch.num_objects):
        y, x = (int(v) for v in torch.nonzero(batch.masks[0, o])[0])
        out.append({"points": torch.tensor([[x, y], [0, 0]]), "point_labels": torch.tensor([1, 0]), "box": None})
    return out


def test_browse_quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(SAM2VideoModule, "preview_prompts", fake_prompts, raising=False)
    override = quickstart_override(tmp_path)
    out = tmp_path / "browse"
    args = ["--config", str(QUICKSTART), "--config", str(override), "--out", str(out), "-n", "3", "--alpha", "1"]
    assert main(["data", "browse", *args, "--data.init_args.seed=5"]) == 0
    assert f"wrote 3 PNG(s) to {out}" in capsys.readouterr().out
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == ["sample_000.png", "sample_001.png", "sample_002.png"]

    # The same samples, drawn independently: the data module of the same recipe gives the same batches.
    datamodule, model = load_recipe([QUICKSTART, override], ["--data.init_args.seed=5"], with_model=False)
    assert model is None
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    epochs = []
    for epoch in (0, 1):  # two training videos: one batch of two per epoch, the third sample from epoch 1
        loader.sampler.set_epoch(epoch)
        epochs += list(loader)
    samples = [(batch, b) for batch in epochs for b in range(2)][:3]
    for png, (batch, b) in zip(pngs, samples, strict=True):
        image = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
        assert image.shape == (64, 3 * 64 + 2 * 2, 3)  # three frames side by side
        objects = batch.objects_of(b).tolist()
        colors = object_colors(len(objects))
        for t in range(3):
            panel = image[:, t * 66 : t * 66 + 64]
            frame = to_uint8_image(batch.images[t, b])
            drawn = np.zeros((64, 64), dtype=bool)
            for k, o in enumerate(objects):
                mask = batch.masks[t, o].numpy()
                drawn |= mask
                # every mask pixel shows its object's colour, but where another object's outline or box or a click
                # crosses it
                assert (panel[mask] == colors[k]).all(axis=1).mean() > 0.8
                if t == 0:
                    y, x = (int(v) for v in np.argwhere(mask)[0])
                    np.testing.assert_array_equal(panel[y, x], POSITIVE_CLICK)
            if t == 0:
                np.testing.assert_array_equal(panel[0, 0], NEGATIVE_CLICK)
            untouched = (panel == frame).all(axis=2)
            assert untouched[~drawn].mean() > 0.5  # outside the objects the frame is shown as it is
    assert not (tmp_path / "runs").exists()  # no Trainer, no logger output

"""``samlab track``: config loading, frames, detections, MOTChallenge output, bad input naming the line."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from samlab.cli import main
from samlab.data.formats.mot import read_detections
from samlab.data.synth import synthesize
from samlab.errors import DataError
from samlab.models.masa.module import MASAModule
from samlab.tools.mot_from_masks import write_mot_sequences
from samlab.tools.track import list_frames, load_module, prepare_frame, run_track, track_frames

MODEL = {
    "class_path": "samlab.models.masa.module.MASAModule",
    "init_args": {
        "backbone": "resnet18",
        "channels": 16,
        "fusion_blocks": 1,
        "fc_channels": 32,
        "anchor_scale": 2.0,
        "tracker": {"init_score_thr": 0.5, "obj_score_thr": 0.3, "match_score_thr": 0.3},
    },
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    root = tmp_path_factory.mktemp("track")
    synthesize("mose", root / "videos", videos=1, frames=6, size=(48, 64), objects=2, seed=5)
    (name,) = write_mot_sequences(root / "videos", root / "mot", progress=False)
    config = root / "masa.yaml"
    config.write_text(yaml.safe_dump({"model": MODEL, "data": {"init_args": {"image_size": 64}}}))
    return root / "mot" / name, config


def test_load_module_takes_image_size_from_the_data_block(sequence, tmp_path):
    _, config = sequence
    module = load_module(config)
    assert isinstance(module, MASAModule) and module.image_size == 64 and not module.training
    assert module.make_tracker().match_score_thr == 0.3
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": module.state_dict()}, ckpt)
    loaded = load_module(config, ckpt)
    torch.testing.assert_close(loaded.model.embed_head.embed.weight, module.model.embed_head.embed.weight)
    (tmp_path / "other.yaml").write_text(yaml.safe_dump({"model": {"class_path": "torch.nn.Linear"}}))
    with pytest.raises(DataError, match="not a MASAModule"):
        load_module(tmp_path / "other.yaml")
    with pytest.raises(DataError, match="checkpoint file is missing"):
        load_module(config, tmp_path / "none.ckpt")


def test_prepare_frame_fits_and_pads():
    image = torch.full((48, 64, 3), 255, dtype=torch.uint8).numpy()
    tensor, scale = prepare_frame(image, 32)
    assert tensor.shape == (1, 3, 32, 32) and scale == 0.5
    # Rows 24+ are padding: grey 114, not the white image.
    assert tensor[0, 0, 30, 5] < tensor[0, 0, 10, 5]


def test_track_command_writes_mot_results(sequence, tmp_path, capsys):
    seq, config = sequence
    out = tmp_path / "tracks.txt"
    code = main(
        [
            "track",
            "--config",
            str(config),
            "--frames",
            str(seq / "img1"),
            "--detections",
            str(seq / "det" / "det.txt"),
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    counts = json.loads(capsys.readouterr().out)
    detections = read_detections(seq / "det" / "det.txt")
    assert counts["frames"] == 6 and counts["detections"] == sum(len(d) for d in detections.values())
    lines = [line.split(",") for line in out.read_text().splitlines()]
    # Every ground-truth box (score 1) is tracked: same boxes, positive ids, frames 1..6.
    assert len(lines) == counts["detections"] == counts["tracked"]
    assert {int(f[0]) for f in lines} <= set(range(1, 7)) and all(int(f[1]) >= 1 for f in lines)
    assert all(len(f) == 10 and f[7:] == ["-1", "-1", "-1"] for f in lines)


def test_tracking_restores_the_module_mode(sequence):
    seq, config = sequence
    module = load_module(config).train()
    frames = list_frames(seq / "img1")
    rows = list(track_frames(module, frames, read_detections(seq / "det" / "det.txt"), progress=False))
    assert rows and module.training


def test_bad_detections_name_the_line(sequence, tmp_path, capsys):
    seq, config = sequence
    det = tmp_path / "det.txt"
    det.write_text("1,-1,5,5,10,10,1,-1,-1,-1\n9,-1,5,5,10,10,1,-1,-1,-1\n")  # frame 9 of a 6-frame video
    with pytest.raises(DataError, match=r"det\.txt.*line 2"):
        run_track(config, seq / "img1", det, tmp_path / "out.txt", progress=False)
    code = main(
        [
            "track",
            "--config",
            str(config),
            "--frames",
            str(seq / "img1"),
            "--detections",
            str(det),
            "--out",
            str(tmp_path / "out.txt"),
        ]
    )
    assert code == 1 and "line 2" in capsys.readouterr().err
    with pytest.raises(DataError, match="no image file"):
        list_frames(tmp_path)

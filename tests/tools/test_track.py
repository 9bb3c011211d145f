"""``samlab track``: config loading, frames, detections, MOTChallenge output, bad input naming the line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from samlab.cli import main
from samlab.data.formats.base import read_image
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


def _run(config, seq, out, *extra):
    return main(["track", "--config", str(config), "--frames", str(seq / "img1"), "--out", str(out), *extra])


def _mot_rows(path):
    return [line.split(",") for line in path.read_text().splitlines()]


def _assert_json_matches_mot(json_path, mot_path):
    results = json.loads(json_path.read_text())
    rows = _mot_rows(mot_path)
    assert len(results) == len(rows)
    for result, row in zip(results, rows):
        assert (result["image_id"], result["track_id"]) == (int(row[0]), int(row[1]))
        assert result["bbox"] == pytest.approx([float(v) for v in row[2:6]], abs=0.01)
    return results


def test_torchvision_detector_boxes_are_tracked(sequence, tmp_path, capsys):
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    from samlab.tools.detectors import TorchvisionDetector

    seq, config = sequence
    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=3)
    checkpoint = tmp_path / "detector.pt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    name = "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn"
    out, out_json = tmp_path / "tracks.txt", tmp_path / "tracks.json"
    args = ["--detector", name, "--detector-checkpoint", str(checkpoint), "--tracker", "demo", "--json"]
    assert _run(config, seq, out, *args, "--out-json", str(out_json)) == 0
    counts = json.loads(capsys.readouterr().out)
    results = _assert_json_matches_mot(out_json, out)
    assert counts["tracked"] == len(results) > 0 and "detections" not in counts
    # Every tracked box is a box the detector (3 classes, read from the checkpoint) gives for that frame.
    detector = TorchvisionDetector("fasterrcnn_mobilenet_v3_large_320_fpn", checkpoint)
    per_frame = [detector(read_image(path)) for path in list_frames(seq / "img1")]
    for result in results:
        found = per_frame[result["image_id"] - 1]
        x, y, w, h = result["bbox"]
        distance = np.abs(found.boxes - np.array([x, y, x + w, y + h], np.float32)).max(axis=1)
        assert distance.min() < 1e-3 and found.labels[distance.argmin()] == result["category_id"]
    assert int(found.labels.max()) <= 2


def test_detector_errors_are_clear(sequence, tmp_path, capsys):
    seq, config = sequence
    out = tmp_path / "tracks.txt"
    assert _run(config, seq, out, "--detector", "torchvision:fasterrcnn_resnet50_fpn_v2") == 2
    assert "needs --detector-checkpoint" in capsys.readouterr().err
    assert _run(config, seq, out, "--detector", "yolo:x.pt") == 2
    assert "unknown detector 'yolo:x.pt'" in capsys.readouterr().err
    args = ["--detector", "torchvision:fasterrcnn_resnet50_fpn_v2", "--detector-checkpoint", str(tmp_path / "no.pt")]
    assert _run(config, seq, out, *args) == 1
    assert "no.pt: detector checkpoint file is missing" in capsys.readouterr().err
    torch.save({"weights": 1}, tmp_path / "bad.pt")
    args[-1] = str(tmp_path / "bad.pt")
    assert _run(config, seq, out, *args) == 1
    assert "checkpoint does not fit torchvision's fasterrcnn_resnet50_fpn_v2" in capsys.readouterr().err
    det = seq / "det" / "det.txt"
    assert _run(config, seq, out, "--detections", str(det), "--tracker", "bdd", "--max-distance", "100") == 2
    assert "max_distance" in capsys.readouterr().err


def test_masa_head_detects_and_tracks_alone(sequence, tmp_path, capsys):
    seq, config = sequence
    module = load_module(config)
    checkpoint = tmp_path / "masa.ckpt"
    torch.save({"state_dict": module.state_dict()}, checkpoint)
    out = tmp_path / "tracks.txt"
    options = ["--detector", "masa", "--checkpoint", str(checkpoint), "--detector-score-thr", "0.0", "--json"]
    assert _run(config, seq, out, *options) == 0
    assert json.loads(capsys.readouterr().out)["tracked"] > 0
    frames = list_frames(seq / "img1")
    per_frame = []
    for path in frames:  # the head's boxes, back in frame pixels
        image = read_image(path)
        tensor, scale = prepare_frame(image, module.image_size)
        with torch.no_grad():
            (found,) = module.model.detect(module.model.features(tensor), (64, 64))
        boxes = (found["boxes"] / scale).numpy()
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, image.shape[1])
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, image.shape[0])
        per_frame.append(boxes)
    for row in _mot_rows(out):
        boxes = per_frame[int(row[0]) - 1]
        x, y, w, h = (float(v) for v in row[2:6])
        assert np.abs(boxes - np.array([x, y, x + w, y + h])).max(axis=1).min() < 0.01


def test_masks_of_the_detections_are_written_as_rle(sequence, tmp_path):
    from samlab.masks import decode_rle, encode_rle

    seq, config = sequence
    detections = read_detections(seq / "det" / "det.txt")
    height, width = read_image(list_frames(seq / "img1")[0]).shape[:2]
    entries = []
    for frame, found in sorted(detections.items()):
        masks = np.zeros((len(found), height, width), bool)
        for mask, (x1, y1, x2, y2) in zip(masks, found.boxes.astype(int)):
            mask[y1:y2, x1:x2] = True
        entries.append({"frame": frame, "boxes": found.boxes.tolist(), "masks": [encode_rle(m) for m in masks]})
    (tmp_path / "det.json").write_text(json.dumps({"frames": entries}))
    out, out_json = tmp_path / "tracks.txt", tmp_path / "tracks.json"
    assert _run(config, seq, out, "--detections", str(tmp_path / "det.json"), "--out-json", str(out_json)) == 0
    results = _assert_json_matches_mot(out_json, out)
    assert results and all("segmentation" in r for r in results)
    for result in results:
        mask = decode_rle(result["segmentation"])
        x, y, w, h = (round(v) for v in result["bbox"])
        assert mask.sum() == mask[y : y + h, x : x + w].size and mask[y : y + h, x : x + w].all()


def test_tracker_presets_from_the_command_line(sequence, tmp_path):
    from samlab.models.masa.tracker import build_tracker

    seq, config = sequence
    det = seq / "det" / "det.txt"
    module = load_module(config)
    checkpoint = tmp_path / "masa.ckpt"
    torch.save({"state_dict": module.state_dict()}, checkpoint)
    frames = list_frames(seq / "img1")
    for options, settings in (
        (["--tracker", "demo"], {"preset": "demo"}),
        (["--max-distance", "1", "--fps", "3"], {**module.tracker_settings, "max_distance": 1.0, "fps": 3.0}),
    ):
        out = tmp_path / "tracks.txt"
        assert _run(config, seq, out, "--detections", str(det), "--checkpoint", str(checkpoint), *options) == 0
        expected = list(track_frames(module, frames, read_detections(det), build_tracker(settings), progress=False))
        assert [(int(r[0]), int(r[1])) for r in _mot_rows(out)] == [(r.frame, r.track_id) for r in expected]


def test_ultralytics_detector_boxes_are_tracked(sequence, tmp_path, capsys):
    ultralytics = pytest.importorskip("ultralytics")

    from samlab.tools.detectors import UltralyticsDetector

    seq, config = sequence
    torch.manual_seed(0)
    yolo = ultralytics.YOLO("yolov8n.yaml")  # randomly initialised, built from the package's model file
    for branch in yolo.model.model[-1].cv3:  # class scores near 0.5 instead of YOLO's prior of ~1e-4
        torch.nn.init.zeros_(branch[-1].bias)
    path = tmp_path / "yolo.pt"
    torch.save({"model": yolo.model.half(), "train_args": {}}, path)
    out, out_json = tmp_path / "tracks.txt", tmp_path / "tracks.json"
    options = ["--detector", f"ultralytics:{path}", "--detector-score-thr", "0.3", "--tracker", "demo"]
    assert _run(config, seq, out, *options, "--out-json", str(out_json)) == 0
    results = _assert_json_matches_mot(out_json, out)
    assert results
    detector = UltralyticsDetector(path, score_thr=0.3)
    frames = list_frames(seq / "img1")
    per_frame = {}
    for result in results:
        if result["image_id"] not in per_frame:
            per_frame[result["image_id"]] = detector(read_image(frames[result["image_id"] - 1]))
        found = per_frame[result["image_id"]]
        x, y, w, h = result["bbox"]
        assert np.abs(found.boxes - np.array([x, y, x + w, y + h], np.float32)).max(axis=1).min() < 1e-3

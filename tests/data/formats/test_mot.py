"""MOTChallenge detections/results I/O and detector-output converters."""

from __future__ import annotations

import configparser
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from samlab.data.formats.mot import (
    FrameDetections,
    detections_from_torchvision,
    detections_from_ultralytics,
    read_detections,
    write_mot_results,
    write_seqinfo,
)
from samlab.errors import DataError
from samlab.masks import encode_rle


def test_read_det_txt(tmp_path: Path) -> None:
    path = tmp_path / "det.txt"
    path.write_text(
        "1,-1,10,20,30,40,0.9,-1,-1,-1\n\n1,-1,0,0,5,5,0.5,-1,-1,-1\n3 -1 1.5 2.5 3 4 0.25\n2,-1,7,8,9,10\n"
    )
    dets = read_detections(path)
    assert list(dets) == [1, 2, 3]
    np.testing.assert_allclose(dets[1].boxes, [[10, 20, 40, 60], [0, 0, 5, 5]])
    np.testing.assert_allclose(dets[1].scores, [0.9, 0.5])
    assert dets[1].boxes.dtype == np.float32 and dets[1].scores.dtype == np.float32
    assert dets[1].labels.dtype == np.int64 and dets[1].labels.tolist() == [0, 0]
    np.testing.assert_allclose(dets[3].boxes, [[1.5, 2.5, 4.5, 6.5]])
    assert dets[2].scores.tolist() == [1.0]  # no score column: 1
    assert dets[1].masks is None


def test_read_detections_fills_empty_frames(tmp_path: Path) -> None:
    path = tmp_path / "det.txt"
    path.write_text("2,-1,0,0,4,4,1\n")
    dets = read_detections(path, num_frames=3)
    assert list(dets) == [1, 2, 3]
    assert len(dets[1]) == 0 and dets[1].boxes.shape == (0, 4) and len(dets[2]) == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1,-1,0,0,-3,4,0.9", "line 2: negative box size"),
        ("1,-1,0,0,3,-4,0.9", "line 2: negative box size"),
        ("1,-1,0,0,3,4,nan", "line 2: score nan is not a finite"),
        ("0,-1,0,0,3,4,0.9", "line 2: frame 0 is out of range"),
        ("6,-1,0,0,3,4,0.9", r"line 2: frame 6 is out of range \(the sequence has 5 frames\)"),
        ("1.5,-1,0,0,3,4,0.9", "line 2: frame number 1.5 is not an integer"),
        ("1,-1,0,inf,3,4,0.9", "line 2: box"),
        ("1,-1,a,0,3,4,0.9", "line 2: non-numeric"),
        ("1,-1,0,0", "line 2: expected"),
    ],
)
def test_bad_det_txt_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "det.txt"
    path.write_text(f"1,-1,0,0,3,4,0.9\n{line}\n")
    with pytest.raises(DataError, match=message) as info:
        read_detections(path, num_frames=5)
    assert info.value.path == str(path)


def test_read_json_with_masks(tmp_path: Path) -> None:
    mask = np.zeros((6, 8), dtype=bool)
    mask[1:3, 2:5] = True
    record = {
        "frames": [
            {"frame": 2, "boxes": [[2, 1, 5, 3]], "scores": [0.8], "labels": [3], "masks": [encode_rle(mask)]},
            {"frame": 1, "boxes": [[0, 0, 1, 1], [1, 1, 2, 2]]},
            {"frame": 4, "boxes": []},
        ]
    }
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(record, indent=1))
    dets = read_detections(path)
    assert list(dets) == [1, 2, 4]
    assert dets[2].labels.tolist() == [3] and dets[2].scores.tolist() == pytest.approx([0.8])
    np.testing.assert_array_equal(dets[2].masks[0], mask)
    assert dets[1].scores.tolist() == [1.0, 1.0] and dets[1].labels.tolist() == [0, 0]
    assert dets[4].boxes.shape == (0, 4)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"frame": 2, "boxes": [[5, 0, 4, 3]]}, r"frames\[1\] \(line 4\), frame 2, box 0: negative box size"),
        ({"frame": 2, "boxes": [[0, 0, 4, 3]], "scores": [float("nan")]}, r"\(line 4\).*score nan"),
        ({"frame": 9, "boxes": [[0, 0, 4, 3]]}, r"frames\[1\] \(line 4\): frame 9 is out of range"),
        ({"frame": 1, "boxes": [[0, 0, 4, 3]]}, "frame 1 is listed twice"),
        ({"frame": 2, "boxes": [[0, 0, 4, 3]], "scores": [1, 1]}, "1 boxes but 2 scores"),
        ({"frame": 2, "boxes": [[0, 0, 4]]}, "'boxes' must be"),
    ],
)
def test_bad_json_names_file_and_line(tmp_path: Path, entry: dict, message: str) -> None:
    path = tmp_path / "dets.json"
    # The second entry starts on line 4.
    path.write_text('{"frames": [\n  {"frame": 1, "boxes": [[0, 0, 1, 1]]},\n\n  ' + json.dumps(entry) + "\n]}\n")
    with pytest.raises(DataError, match=message) as info:
        read_detections(path, num_frames=5)
    assert info.value.path == str(path)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing"):
        read_detections(tmp_path / "none.txt")
    path = tmp_path / "bad.json"
    path.write_text('{"frames": [\n{"frame": 1,}]}')
    with pytest.raises(DataError, match="corrupt JSON at line 2"):
        read_detections(path)


def test_detections_from_torchvision() -> None:
    masks = torch.zeros(2, 1, 4, 5)
    masks[0, 0, 1, 2] = 0.9
    masks[1, 0, 3, 4] = 0.4
    output = {
        "boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 5.0, 4.0]]),
        "scores": torch.tensor([0.9, 0.3]),
        "labels": torch.tensor([1, 7]),
        "masks": masks,
    }
    dets = detections_from_torchvision(output)
    assert isinstance(dets, FrameDetections) and len(dets) == 2
    np.testing.assert_allclose(dets.boxes, output["boxes"].numpy())
    assert dets.labels.dtype == np.int64 and dets.labels.tolist() == [1, 7]
    assert dets.masks.shape == (2, 4, 5) and dets.masks.dtype == bool
    assert dets.masks[0].sum() == 1 and dets.masks[0, 1, 2] and dets.masks[1].sum() == 0
    plain = detections_from_torchvision({k: v for k, v in output.items() if k != "masks"})
    assert plain.masks is None and plain.scores.tolist() == pytest.approx([0.9, 0.3])


def _ultralytics_result(masks: torch.Tensor | None, orig_shape: tuple[int, int]) -> SimpleNamespace:
    boxes = SimpleNamespace(
        xyxy=torch.tensor([[20.0, 10.0, 40.0, 20.0]]), conf=torch.tensor([0.75]), cls=torch.tensor([2.0])
    )
    return SimpleNamespace(
        boxes=boxes, masks=None if masks is None else SimpleNamespace(data=masks), orig_shape=orig_shape
    )


def test_detections_from_ultralytics_boxes_only() -> None:
    dets = detections_from_ultralytics(_ultralytics_result(None, (40, 80)))
    np.testing.assert_allclose(dets.boxes, [[20, 10, 40, 20]])
    assert dets.scores.tolist() == [0.75] and dets.labels.tolist() == [2] and dets.masks is None


def test_detections_from_ultralytics_unletterboxes_masks() -> None:
    # A 40x80 image letterboxed into 64x64: scaled by 0.8 to 32x64, padded by 16 rows above and below.
    truth = np.zeros((40, 80), dtype=bool)
    truth[10:20, 20:40] = True
    letterboxed = torch.zeros(1, 64, 64)
    letterboxed[0, 16 + 8 : 16 + 16, 16:32] = 1.0
    dets = detections_from_ultralytics(_ultralytics_result(letterboxed, (40, 80)))
    assert dets.masks.shape == (1, 40, 80)
    np.testing.assert_array_equal(dets.masks[0], truth)
    same_size = detections_from_ultralytics(_ultralytics_result(torch.from_numpy(truth[None]).float(), (40, 80)))
    np.testing.assert_array_equal(same_size.masks[0], truth)


def test_write_mot_results_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "seq.txt"
    write_mot_results(path, iter([(1, 3, (10.0, 20.0, 40.0, 60.0), 0.9), (2, 4, np.array([0, 0, 5.5, 5]), 1.0)]))
    lines = path.read_text().splitlines()
    assert lines[0] == "1,3,10.00,20.00,30.00,40.00,0.9000,-1,-1,-1"
    assert lines[1] == "2,4,0.00,0.00,5.50,5.00,1.0000,-1,-1,-1"
    dets = read_detections(path)
    np.testing.assert_allclose(dets[1].boxes, [[10, 20, 40, 60]])
    np.testing.assert_allclose(dets[2].boxes, [[0, 0, 5.5, 5]])


def test_write_seqinfo(tmp_path: Path) -> None:
    write_seqinfo(tmp_path / "seq", "seq", num_frames=7, width=64, height=48, frame_rate=10)
    ini = configparser.ConfigParser()
    ini.read(tmp_path / "seq" / "seqinfo.ini")
    section = ini["Sequence"]
    assert (section["name"], section["imDir"], section["imExt"]) == ("seq", "img1", ".jpg")
    assert (int(section["seqLength"]), int(section["imWidth"]), int(section["imHeight"])) == (7, 64, 48)
    assert int(section["frameRate"]) == 10

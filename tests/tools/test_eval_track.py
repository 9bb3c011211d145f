"""``samlab eval track`` prints exactly what evaluate_mot returns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from samlab.cli import main
from samlab.data.formats.mot import write_mot_results, write_seqinfo
from samlab.metrics.tracking import evaluate_mot
from samlab.tools.eval_track import format_table


@pytest.fixture
def mot_pair(tmp_path: Path) -> tuple[Path, Path]:
    gt, pred = tmp_path / "GT", tmp_path / "PRED"
    for seq, switch in (("a", False), ("b", True)):
        write_seqinfo(gt / seq, seq, num_frames=3, width=100, height=100)
        (gt / seq / "gt").mkdir()
        (gt / seq / "gt" / "gt.txt").write_text(
            "".join(f"{f},{i},{10 * i},{10 * i},8,8,1,1,1\n" for f in (1, 2, 3) for i in (1, 2, 5))
        )
        # In sequence b the tracker swaps tracks 1 and 2 from frame 3 on.
        rows = [
            (f, (3 - i if switch and f == 3 and i < 5 else i), (10 * i, 10 * i, 10 * i + 8, 10 * i + 8), 1.0)
            for f in (1, 2, 3)
            for i in (1, 2, 5)
        ]
        write_mot_results(pred / f"{seq}.txt", rows)
    return gt, pred


def test_cli_json_is_evaluate_mot(mot_pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    gt, pred = mot_pair
    assert main(["eval", "track", "--gt", str(gt), "--pred", str(pred), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = evaluate_mot(gt, pred)
    assert printed == expected
    assert printed["per_sequence"]["a"]["IDF1"] == pytest.approx(100.0)
    assert printed["per_sequence"]["b"]["IDF1"] < 100.0 and printed["per_sequence"]["b"]["DetA"] == pytest.approx(100)


def test_cli_table_and_sequence_choice(mot_pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    gt, pred = mot_pair
    assert main(["eval", "track", "--gt", str(gt), "--pred", str(pred), "--seq", "a"]) == 0
    text = capsys.readouterr().out
    assert text.strip() == format_table(evaluate_mot(gt, pred, ["a"]))
    lines = text.splitlines()
    assert lines[0].split() == ["sequence", "HOTA", "AssA", "DetA", "MOTA", "IDF1"]
    assert lines[1].split() == ["a", *["100.00"] * 5] and lines[2].split()[0] == "ALL"


def test_cli_missing_prediction_is_a_clear_error(mot_pair: tuple[Path, Path], capsys) -> None:
    gt, pred = mot_pair
    (pred / "b.txt").unlink()
    assert main(["eval", "track", "--gt", str(gt), "--pred", str(pred)]) == 1
    assert "b.txt: sequence 'b': file is missing" in capsys.readouterr().err


def test_cli_teta_prints_the_metric(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = {
        "videos": [{"id": 1, "name": "v"}],
        "images": [{"id": i, "video_id": 1, "frame_index": i} for i in (1, 2)],
        "annotations": [
            {"id": i, "image_id": i, "track_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]} for i in (1, 2)
        ],
        "categories": [{"id": 1, "name": "car"}],
    }
    # An id switch at frame 2: AssocA 50, the rest perfect.
    results = [{"image_id": i, "track_id": i, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9} for i in (1, 2)]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    args = [
        "eval",
        "track",
        "--metric",
        "teta",
        "--gt",
        str(tmp_path / "gt.json"),
        "--pred",
        str(tmp_path / "res.json"),
    ]
    assert main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["TETA"], printed["LocA"], printed["AssocA"], printed["ClsA"]) == pytest.approx(
        (250 / 3, 100, 50, 100)
    )
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["class", "TETA", "LocA", "AssocA", "ClsA"]
    assert lines[1].split() == ["car", "83.33", "100.00", "50.00", "100.00"] and lines[2].split()[0] == "ALL"
    results[1]["image_id"] = 7
    (tmp_path / "res.json").write_text(json.dumps(results))
    assert main(args) == 1
    assert "res.json: results[1]: image 7 is not in the ground truth" in capsys.readouterr().err


def test_cli_bdd100k(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = [
        {
            "name": f"s-{i}.jpg",
            "videoName": "s",
            "index": i,
            "labels": [{"id": "1", "category": "car", "box2d": {"x1": 0.0, "y1": 0.0, "x2": 20.0, "y2": 20.0}}],
        }
        for i in range(3)
    ]
    for folder in ("GT", "PRED"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "s.json").write_text(json.dumps(frames))
    args = ["eval", "track", "--metric", "bdd100k", "--gt", str(tmp_path / "GT"), "--pred", str(tmp_path / "PRED")]
    assert main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["per_class"]["car"]["MOTA"] == pytest.approx(100) and printed["mMOTA"] == pytest.approx(100 / 8)
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == [
        "class",
        "mHOTA",
        "mMOTA",
        "mIDF1",
        "HOTA",
        "MOTA",
        "IDF1",
    ]

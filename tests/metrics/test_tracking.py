"""TrackEval-backed tracking scores (MOTChallenge, BDD100K) on tiny sequences whose scores are known by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from samlab.data.formats.mot import write_seqinfo
from samlab.errors import DataError
from samlab.metrics.tracking import BDD100K_CLASSES, evaluate_bdd100k, evaluate_mot, list_sequences

# Two objects visible on all 4 frames, far apart: (frame, id, x, y, w, h).
GT_ROWS = [(f, i, 0 if i == 1 else 50, 0 if i == 1 else 50, 10, 10) for f in range(1, 5) for i in (1, 2)]


def _write_gt(root: Path, seq: str, rows: list[tuple]) -> None:
    write_seqinfo(root / seq, seq, num_frames=4, width=100, height=100)
    (root / seq / "gt").mkdir(parents=True, exist_ok=True)
    (root / seq / "gt" / "gt.txt").write_text("".join(f"{f},{i},{x},{y},{w},{h},1,1,1\n" for f, i, x, y, w, h in rows))


def _write_pred(root: Path, seq: str, rows: list[tuple]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{seq}.txt").write_text("".join(f"{f},{i},{x},{y},{w},{h},1,-1,-1,-1\n" for f, i, x, y, w, h in rows))


def _score(tmp_path: Path, pred_rows: list[tuple]) -> dict:
    _write_gt(tmp_path / "GT", "s1", GT_ROWS)
    _write_pred(tmp_path / "PRED", "s1", pred_rows)
    return evaluate_mot(tmp_path / "GT", tmp_path / "PRED")


def test_perfect_tracks_score_100(tmp_path: Path) -> None:
    result = _score(tmp_path, GT_ROWS)
    for name in ("HOTA", "AssA", "DetA", "MOTA", "IDF1"):
        assert result[name] == pytest.approx(100.0)
    assert result["per_sequence"]["s1"] == {k: v for k, v in result.items() if k != "per_sequence"}


def test_id_switch_lowers_association_not_detection(tmp_path: Path) -> None:
    # Object 1 is predicted as track 1 on frames 1-2 and as track 3 on frames 3-4.
    pred = [(f, 3 if i == 1 and f > 2 else i, x, y, w, h) for f, i, x, y, w, h in GT_ROWS]
    result = _score(tmp_path, pred)
    assert result["DetA"] == pytest.approx(100.0)
    # Ass-IoU is 0.5 for both halves of object 1 and 1 for object 2: (4 * 0.5 + 4 * 1) / 8.
    assert result["AssA"] == pytest.approx(75.0)
    assert result["HOTA"] == pytest.approx(100 * 0.75**0.5)
    # IDTP 6, IDFN 2, IDFP 2; MOTA = 1 - IDSW / GT = 1 - 1/8.
    assert result["IDF1"] == pytest.approx(75.0)
    assert result["MOTA"] == pytest.approx(87.5)


def test_missed_box_lowers_detection(tmp_path: Path) -> None:
    result = _score(tmp_path, GT_ROWS[:-1])
    assert result["MOTA"] == pytest.approx(87.5)  # 1 FN of 8
    assert result["IDF1"] == pytest.approx(100 * 14 / 15)  # IDTP 7, IDFN 1
    assert result["DetA"] == pytest.approx(87.5)  # TP / (TP + FN + FP) = 7 / 8 at every threshold
    # Object 1: 4 matches, Ass-IoU 1; object 2: 3 matches, Ass-IoU 3 / 4.
    assert result["AssA"] == pytest.approx(100.0 * (4 * 1 + 3 * 3 / 4) / 7)


def test_sequences_combine(tmp_path: Path) -> None:
    _write_gt(tmp_path / "GT", "a", GT_ROWS)
    _write_gt(tmp_path / "GT", "b", GT_ROWS)
    _write_pred(tmp_path / "PRED", "a", GT_ROWS)
    _write_pred(tmp_path / "PRED", "b", GT_ROWS[:-1])
    assert list_sequences(tmp_path / "GT") == ["a", "b"]
    result = evaluate_mot(tmp_path / "GT", tmp_path / "PRED")
    assert result["per_sequence"]["a"]["MOTA"] == pytest.approx(100.0)
    assert result["per_sequence"]["b"]["MOTA"] == pytest.approx(87.5)
    assert result["MOTA"] == pytest.approx(100 * (1 - 1 / 16))
    only_a = evaluate_mot(tmp_path / "GT", tmp_path / "PRED", sequences=["a"])
    assert list(only_a["per_sequence"]) == ["a"] and only_a["IDF1"] == pytest.approx(100.0)


def test_bad_input_names_the_file(tmp_path: Path) -> None:
    _write_gt(tmp_path / "GT", "s1", GT_ROWS)
    with pytest.raises(DataError, match=r"s1\.txt: sequence 's1': file is missing"):
        evaluate_mot(tmp_path / "GT", tmp_path / "PRED")
    _write_pred(tmp_path / "PRED", "s1", [*GT_ROWS, (1, 1, 20, 20, 5, 5)])
    with pytest.raises(DataError, match=r"PRED: TrackEval rejected the input: .*same ID more than once"):
        evaluate_mot(tmp_path / "GT", tmp_path / "PRED")
    with pytest.raises(DataError, match="no sequence found"):
        evaluate_mot(tmp_path / "PRED", tmp_path / "PRED")


def _bdd_sequence(folder: Path, labels_per_frame: list[list[tuple[str, str, float]]]) -> None:
    """``folder/s.json``: BDD100K frames whose labels are (id, category, x) boxes 20 px wide."""
    frames = [
        {
            "name": f"s-{i}.jpg",
            "videoName": "s",
            "index": i,
            "labels": [
                {"id": lid, "category": cat, "box2d": {"x1": x, "y1": 0.0, "x2": x + 20, "y2": 20.0}}
                for lid, cat, x in labels
            ],
        }
        for i, labels in enumerate(labels_per_frame)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "s.json").write_text(json.dumps(frames))


def test_bdd100k_scores_are_class_averages(tmp_path: Path) -> None:
    _bdd_sequence(tmp_path / "GT", [[("1", "car", 0.0), ("2", "pedestrian", 50.0)]] * 4)
    # The car is tracked perfectly; the pedestrian switches id at frame 2.
    pred = [[("1", "car", 0.0), ("7" if i < 2 else "8", "pedestrian", 50.0)] for i in range(4)]
    _bdd_sequence(tmp_path / "PRED", pred)
    result = evaluate_bdd100k(tmp_path / "GT", tmp_path / "PRED")
    assert result["per_class"]["car"]["MOTA"] == pytest.approx(100)
    assert result["per_class"]["pedestrian"]["MOTA"] == pytest.approx(75)  # (4 TP - 1 switch) / 4
    assert result["per_class"]["pedestrian"]["IDF1"] == pytest.approx(50)
    # TrackEval averages over BDD100K's 8 classes, those without ground truth counting 0.
    assert set(result["per_class"]) == set(BDD100K_CLASSES)
    assert result["mMOTA"] == pytest.approx((100 + 75) / 8)
    assert result["mIDF1"] == pytest.approx((100 + 50) / 8)
    assert result["MOTA"] == pytest.approx(100 * 7 / 8)  # over all detections


def test_bdd100k_missing_result_names_the_file(tmp_path: Path) -> None:
    _bdd_sequence(tmp_path / "GT", [[("1", "car", 0.0)]])
    (tmp_path / "PRED").mkdir()
    with pytest.raises(DataError, match=r"s\.json: sequence 's': file is missing"):
        evaluate_bdd100k(tmp_path / "GT", tmp_path / "PRED")

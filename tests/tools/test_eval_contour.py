"""``samlab eval contour``: folder in, JSON out; equal to the metric; missing and mis-sized predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samlab.cli import main
from samlab.errors import DataError
from samlab.metrics.contour import contour_scores
from samlab.tools.eval_contour import evaluate_contours


def _write(folder: Path, name: str, array: np.ndarray) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    line = np.zeros((40, 40), dtype=np.uint8)
    line[:, 20] = 1
    probs = np.zeros((40, 40), dtype=np.uint8)
    probs[:, 20] = 200  # 0.78: above 0.5, below 0.9
    probs[:, 5] = 100  # 0.39: only above the low threshold
    _write(gt, "a.png", line * 255)
    _write(pred, "a.png", probs)
    _write(gt, "sub/b.png", np.zeros((40, 40)))  # empty ground truth: skipped
    _write(pred, "sub/b.png", probs)
    return gt, pred


def test_cli_json_equals_the_metric(folders, capsys):
    gt, pred = folders
    assert (
        main(
            [
                "eval",
                "contour",
                "--gt",
                str(gt),
                "--pred",
                str(pred),
                "--thresholds",
                "0.3,0.5,0.9",
                "--tolerance",
                "3",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert [row["threshold"] for row in result["thresholds"]] == [0.3, 0.5, 0.9]
    assert (result["num_images"], result["num_skipped"]) == (1, 1)
    line = np.zeros((40, 40), dtype=bool)
    line[:, 20] = True
    probs = np.zeros((40, 40))
    probs[:, 20], probs[:, 5] = 200 / 255, 100 / 255
    for row in result["thresholds"]:
        expected = contour_scores(line, probs > row["threshold"], tolerance=3)
        assert row["recall"] == pytest.approx(expected.recall)
        assert row["num_tokens"] == expected.num_tokens
        assert row["precision"] == pytest.approx(expected.precision)
        assert row["f"] == pytest.approx(expected.f)
    low, mid, high = result["thresholds"]
    assert mid["recall"] == 1.0 and high["recall"] == 0.0
    assert low["num_tokens"] == mid["num_tokens"] + 1  # the extra line at 0.39 splits off one more region
    assert low["precision"] == pytest.approx(0.5) and mid["precision"] == 1.0


def test_text_output_is_directsam_s_table_with_evaluate_py_s_defaults(folders, capsys):
    gt, pred = folders
    assert main(["eval", "contour", "--gt", str(gt), "--pred", str(pred)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("1 images scored, 1 skipped")
    assert lines[1] == "threshold\tmean_recall\tmean_num_tokens"
    expected = evaluate_contours(gt, pred, (0.1, 0.2, 0.3, 0.4, 0.5), tolerance=5, progress=False)
    assert len(lines) == 2 + 5
    for line, row in zip(lines[2:], expected["thresholds"], strict=True):
        threshold, recall, tokens = line.split("\t")
        assert float(threshold) == row["threshold"]
        assert float(recall) == pytest.approx(row["recall"], rel=1e-5) and float(tokens) == row["num_tokens"]
    # At tolerance 5 the faint line (column 5) merges with the border band: recall 1 with 3 tokens throughout.
    assert lines[2:] == [f"{t}\t1\t3" for t in ("0.1", "0.2", "0.3", "0.4", "0.5")]


def test_missing_and_mis_sized_predictions_name_the_file(folders):
    gt, pred = folders
    (pred / "a.png").unlink()
    with pytest.raises(DataError, match=r"pred/a\.png: no prediction"):
        evaluate_contours(gt, pred, progress=False)
    _write(pred, "a.png", np.zeros((30, 40)))
    with pytest.raises(DataError, match=r"pred/a\.png: prediction is 40x30"):
        evaluate_contours(gt, pred, progress=False)


def test_all_empty_ground_truth_gives_no_scores(tmp_path):
    _write(tmp_path / "gt", "a.png", np.zeros((20, 20)))
    _write(tmp_path / "pred", "a.png", np.zeros((20, 20)))
    result = evaluate_contours(tmp_path / "gt", tmp_path / "pred", (0.5,), progress=False)
    assert result["num_images"] == 0 and result["thresholds"][0]["recall"] is None


def test_bad_thresholds_are_refused(folders):
    gt, pred = folders
    with pytest.raises(SystemExit):
        main(["eval", "contour", "--gt", str(gt), "--pred", str(pred), "--thresholds", "0.5,abc"])

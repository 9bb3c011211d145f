"""DAVIS/MOSE-layout videos to MOTChallenge sequences (ground truth and detections from the masks)."""

from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np
import pytest

from samlab.data.formats.davis import DAVISReader
from samlab.data.formats.mot import read_detections
from samlab.errors import DataError
from samlab.masks import masks_to_boxes
from samlab.metrics.tracking import evaluate_mot
from samlab.tools.mot_from_masks import link_or_copy, write_mot_sequences


def test_write_mot_sequences(mose_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "mot"
    names = write_mot_sequences(mose_root, out, progress=False)
    reader = DAVISReader(mose_root)
    assert names == reader.names and len(names) == 3
    video = reader[0]
    seq = out / names[0]
    assert sorted(p.name for p in (seq / "img1").iterdir()) == [f"{t:06d}.jpg" for t in range(1, 9)]
    assert (seq / "img1" / "000003.jpg").read_bytes() == video.frame_path(2).read_bytes()
    ini = configparser.ConfigParser()
    ini.read(seq / "seqinfo.ini")
    assert (ini["Sequence"]["seqLength"], ini["Sequence"]["imWidth"], ini["Sequence"]["imHeight"]) == ("8", "64", "48")
    gt = np.loadtxt(seq / "gt" / "gt.txt", delimiter=",", ndmin=2)
    # The synthetic first object leaves the frame and comes back: some frames have fewer rows.
    assert set(np.unique(gt[:, 1]).astype(int)) == {1, 2, 3}
    assert len(gt) < 8 * 3
    for k in range(video.num_frames):
        masks = video.masks(k)
        ids = masks.ids()
        boxes = masks_to_boxes(masks.decode(ids))
        rows = gt[gt[:, 0] == k + 1]
        assert sorted(rows[:, 1].astype(int).tolist()) == sorted(ids)
        for row in rows:
            x0, y0, x1, y1 = boxes[ids.index(int(row[1]))]
            np.testing.assert_allclose(row[2:6], [x0, y0, x1 - x0, y1 - y0])
            np.testing.assert_array_equal(row[6:9], [1, 1, 1])
    dets = read_detections(seq / "det" / "det.txt", num_frames=8)
    assert sum(len(d) for d in dets.values()) == len(gt)
    np.testing.assert_allclose(dets[1].boxes[:, 2:] - dets[1].boxes[:, :2], gt[gt[:, 0] == 1][:, 4:6])


def test_ground_truth_scores_100_against_itself(mose_root: Path, tmp_path: Path) -> None:
    names = write_mot_sequences(mose_root, tmp_path / "GT", progress=False)
    pred = tmp_path / "PRED"
    pred.mkdir()
    for name in names:
        (pred / f"{name}.txt").write_text((tmp_path / "GT" / name / "gt" / "gt.txt").read_text())
    result = evaluate_mot(tmp_path / "GT", pred)
    assert result["HOTA"] == pytest.approx(100.0) and result["IDF1"] == pytest.approx(100.0)


def test_missing_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder is missing"):
        write_mot_sequences(tmp_path, tmp_path / "out", progress=False)


def test_link_or_copy_replaces_the_target(tmp_path: Path) -> None:
    source, target = tmp_path / "a.jpg", tmp_path / "b.jpg"
    source.write_bytes(b"frame")
    target.write_bytes(b"old")
    link_or_copy(source, target)
    assert target.read_bytes() == b"frame" and target.stat().st_ino == source.stat().st_ino

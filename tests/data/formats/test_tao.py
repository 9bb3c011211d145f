"""TAO ground truth and results: reading, checks naming the file, writing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from samlab.data.formats.tao import read_tao_ground_truth, read_tao_results, write_tao_results
from samlab.errors import DataError

GT = {
    "videos": [{"id": 1, "name": "v"}],
    "images": [{"id": 3, "video_id": 1, "frame_index": 0}],
    "annotations": [{"image_id": 3, "track_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}],
    "categories": [{"id": 1, "name": "car"}],
}
RESULT = {"image_id": 3, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5, "track_id": 2}


def test_round_trip(tmp_path: Path) -> None:
    (tmp_path / "gt.json").write_text(json.dumps(GT))
    assert read_tao_ground_truth(tmp_path / "gt.json") == GT
    write_tao_results(tmp_path / "out" / "res.json", [RESULT])
    assert read_tao_results(tmp_path / "out" / "res.json", image_ids=[3]) == [RESULT]
    (tmp_path / "wrapped.json").write_text(json.dumps({"annotations": [RESULT]}))
    assert read_tao_results(tmp_path / "wrapped.json") == [RESULT]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"videos": None}, "needs the keys"),
        ({"images": [{"id": 3, "video_id": 2, "frame_index": 0}]}, "video 2, which is not listed"),
        ({"annotations": [{"image_id": 3, "track_id": 1, "category_id": 1}]}, r"annotations\[0\] has no 'bbox'"),
        ({"annotations": [{"image_id": 4, "track_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]}, "image 4"),
    ],
)
def test_bad_ground_truth_names_the_file(tmp_path: Path, change: dict, message: str) -> None:
    data = {k: v for k, v in {**GT, **change}.items() if v is not None}
    (tmp_path / "gt.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=message) as err:
        read_tao_ground_truth(tmp_path / "gt.json")
    assert "gt.json" in str(err.value)


def test_bad_results_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "res.json"
    path.write_text(json.dumps([{**RESULT, "image_id": 8}]))
    with pytest.raises(DataError, match="image 8 is not in the ground truth"):
        read_tao_results(path, image_ids=[3])
    path.write_text(json.dumps([{k: v for k, v in RESULT.items() if k != "track_id"}]))
    with pytest.raises(DataError, match="has no 'track_id'"):
        read_tao_results(path)
    path.write_text("{")
    with pytest.raises(DataError, match="cannot read TAO results"):
        read_tao_results(path)
    with pytest.raises(DataError, match="file is missing"):
        read_tao_results(tmp_path / "none.json")

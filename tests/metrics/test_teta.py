"""TETA: equal to SysCV/tet's ``teta`` on seeded synthetic TAO cases (golden/README.md), and hand-worked cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from samlab.metrics.teta import ALPHAS, FIELDS, teta

CASES = json.loads((Path(__file__).parent / "golden" / "teta_cases.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[str(c["seed"]) for c in CASES])
def test_equals_the_reference(case):
    got = teta(case["gt"], case["results"])
    for name in FIELDS:
        assert got[name] == pytest.approx(case["teta"][name], abs=1e-9), name
    assert set(got["per_class"]) == set(case["per_class"])
    for cls, expected in case["per_class"].items():
        for name in FIELDS:
            assert got["per_class"][cls][name] == pytest.approx(expected[name], abs=1e-9), (cls, name)


def _gt(boxes_per_frame, classes=(1,)):
    """One video, one image per frame; ``boxes_per_frame``: per frame a list of (track id, class, [x, y, w, h])."""
    anns = [
        {"id": n, "image_id": f + 1, "video_id": 1, "track_id": t, "category_id": c, "bbox": box}
        for f, frame in enumerate(boxes_per_frame)
        for n, (t, c, box) in enumerate(frame, start=100 * f)
    ]
    return {
        "videos": [{"id": 1, "name": "v"}],
        "images": [{"id": f + 1, "video_id": 1, "frame_index": f} for f in range(len(boxes_per_frame))],
        "annotations": anns,
        "categories": [{"id": c, "name": f"class{c}"} for c in (1, 2)],
    }


def _results(per_frame):
    return [
        {"image_id": f + 1, "track_id": t, "category_id": c, "bbox": box, "score": 0.9}
        for f, frame in enumerate(per_frame)
        for t, c, box in frame
    ]


BOX = [0.0, 0.0, 10.0, 10.0]


def test_perfect_tracks_score_100():
    frames = [[(1, 1, BOX)], [(1, 1, BOX)]]
    result = teta(_gt(frames), _results(frames))
    assert {k: result[k] for k in FIELDS} == pytest.approx(dict.fromkeys(FIELDS, 100.0))
    assert set(result["per_class"]) == {"class1"}  # only classes with ground truth are scored


def test_wrong_class_loses_only_clsa():
    result = teta(_gt([[(1, 1, BOX)], [(1, 1, BOX)]]), _results([[(5, 2, BOX)], [(5, 2, BOX)]]))
    assert (result["LocA"], result["AssocA"], result["ClsA"]) == pytest.approx((100, 100, 0))
    assert result["TETA"] == pytest.approx(200 / 3)


def test_id_switch_halves_association():
    # Frame 1 is predicted as track 1, frame 2 as track 2: each pair matches 1 of its 2 + 1 - 1 frames.
    result = teta(_gt([[(1, 1, BOX)], [(1, 1, BOX)]]), _results([[(1, 1, BOX)], [(2, 1, BOX)]]))
    assert (result["LocA"], result["AssocA"], result["ClsA"]) == pytest.approx((100, 50, 100))
    assert (result["AssocRe"], result["AssocPr"]) == pytest.approx((50, 100))
    assert result["TETA"] == pytest.approx(250 / 3)


def test_loose_box_counts_up_to_its_iou():
    # IoU 0.62: a match at the 13 thresholds 0..0.6, a miss and a false positive at the 7 above.
    loose = [0.0, 0.0, 10.0, 6.2]
    result = teta(_gt([[(1, 1, BOX)]]), _results([[(1, 1, loose)]]))
    matched = int((ALPHAS <= 0.62).sum())
    assert matched == 13
    assert result["LocA"] == pytest.approx(100 * matched / 20)
    assert result["AssocA"] == pytest.approx(100 * matched / 20)
    assert result["ClsA"] == pytest.approx(100 * 3 / 10)  # alpha 0.5, 0.55, 0.6 of the 10 from 0.5 up
    assert result["LocPr"] == pytest.approx(100 * matched / 20)


def test_missed_object_and_false_positive():
    gt = _gt([[(1, 1, BOX), (2, 1, [50.0, 50.0, 10.0, 10.0])]])
    # Object 2 is missed; a prediction far from any ground truth is no FP (TETA counts FPs near ground truth).
    result = teta(gt, _results([[(1, 1, BOX), (9, 1, [200.0, 200.0, 10.0, 10.0])]]))
    assert (result["LocRe"], result["LocPr"], result["LocA"]) == pytest.approx((50, 100, 50))


def test_duplicate_track_id_in_an_image_is_an_error():
    with pytest.raises(ValueError, match="track id 1 appears twice in image 1"):
        teta(_gt([[(1, 1, BOX)]]), _results([[(1, 1, BOX), (1, 1, BOX)]]))

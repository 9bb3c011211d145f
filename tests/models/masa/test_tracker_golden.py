"""MASATracker and MASABDDTracker against golden outputs of MASA's own trackers (see golden/README.md).

Each case runs one constructor setting of ``MasaTaoTracker`` or ``MasaBDDTracker`` over a seeded random stream of
embedded detections (moving objects, occlusions shorter and longer than the memory, jumps, duplicates, clutter,
empty frames, noisy labels); samlab must give every detection the same track id (the reference's id + 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from samlab.models.masa.tracker import MASABDDTracker, MASATracker

GOLDEN = Path(__file__).parent / "golden"
SETTINGS = json.loads((GOLDEN / "tracker_settings.json").read_text())
DATA = np.load(GOLDEN / "tracker_streams.npz")


def _tracker(family: str, reference_kwargs: dict):
    kwargs = dict(reference_kwargs)
    with_cats = kwargs.pop("with_cats", None)
    if family == "tao":  # MasaTaoTracker stores with_cats but never uses it
        return MASATracker(**kwargs)
    return MASABDDTracker(**kwargs, match_same_label=bool(with_cats))


def _run(tracker, seed: int) -> np.ndarray:
    """Track id of every detection of stream ``seed`` (0 when untracked: reference id -1, shifted by one)."""
    key = f"stream{seed}_"
    frame = DATA[key + "frame"]
    boxes, scores, labels, embeds = (torch.from_numpy(DATA[key + k]) for k in ("boxes", "scores", "labels", "embeds"))
    ids = np.zeros(len(frame), np.int64)
    for t in range(int(DATA[key + "num_frames"])):
        sel = np.nonzero(frame == t)[0]
        result = tracker.step(t, boxes[sel], scores[sel], labels[sel], embeds[sel])
        ids[sel[result.indices.numpy()]] = result.ids.numpy()
    return ids


CASES = [
    (family, k, seed) for family in ("tao", "bdd") for k in range(len(SETTINGS[family])) for seed in SETTINGS["seeds"]
]


@pytest.mark.parametrize(("family", "setting", "seed"), CASES)
def test_tracks_equal_the_reference(family, setting, seed):
    expected = DATA[f"{family}{setting}_stream{seed}_ids"] + 1
    got = _run(_tracker(family, SETTINGS[family][setting]), seed)
    assert (got == expected).all(), f"{(got != expected).sum()} of {len(got)} detections differ"


@pytest.mark.parametrize(
    ("family", "setting", "change"),
    [
        ("tao", 0, {"match_same_label": True}),  # the streams have label noise: gating by label changes tracks
        ("tao", 2, {"max_distance": -1}),  # the demo's spatial gating matters (objects jump)
        ("tao", 2, {"fps": 3}),  # and so do its growth and smoothing
        ("tao", 1, {"memo_tracklet_frames": 30}),  # eviction happens (occlusions up to 13 frames)
        ("tao", 1, {"memo_momentum": 0.3}),  # the momentum update matters
        ("tao", 0, {"distractor_nms_thr": 0.9}),  # distractors are removed
        ("tao", 0, {"init_score_thr": 0.7}),
        ("tao", 1, {"obj_score_thr": 0.3}),
        ("bdd", 1, {"memo_backdrop_frames": 0}),  # backdrops matter
        ("bdd", 1, {"nms_class_iou_thr": 0.95}),  # cross-class duplicate removal matters
        ("bdd", 1, {"nms_conf_thr": 0.99}),
    ],
)
def test_the_streams_exercise_each_setting(family, setting, change):
    """A changed setting gives other tracks than the reference on at least one stream: the golden cases cover it."""
    kwargs = {**SETTINGS[family][setting], **change}
    differs = [
        (_run(_tracker(family, kwargs), seed) != DATA[f"{family}{setting}_stream{seed}_ids"] + 1).any()
        for seed in SETTINGS["seeds"]
    ]
    assert any(differs)

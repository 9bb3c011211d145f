"""MASATracker / MASABDDTracker: identities through crossings, re-appearance, distractors, momentum, spatial gating,
backdrops, presets. Equality with MASA's own trackers: test_tracker_golden.py."""

from __future__ import annotations

import pytest
import torch

from samlab.models.masa.tracker import MASABDDTracker, MASATracker, bisoftmax_cosine, build_tracker

A, B = torch.tensor([8.0, 0.0, 1.0]), torch.tensor([0.0, 8.0, 1.0])


def _step(tracker, frame, boxes, embeds, scores=None, labels=None):
    boxes = torch.tensor(boxes, dtype=torch.float32)
    scores = torch.full((len(boxes),), 0.9) if scores is None else torch.tensor(scores)
    labels = torch.zeros(len(boxes), dtype=torch.long) if labels is None else torch.tensor(labels)
    embeds = torch.stack(embeds) if embeds else torch.zeros((0, 3))
    return tracker.step(frame, boxes, scores, labels, embeds)


def _ids(result):
    """Track id of each input detection (by input index)."""
    return dict(zip(result.indices.tolist(), result.ids.tolist()))


def test_match_scores_are_mean_of_bisoftmax_and_cosine():
    det = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    memo = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    dots = det @ memo.T
    cosine = torch.tensor([[1.0, 2**-0.5], [0.0, 2**-0.5]])
    expected = ((dots.softmax(1) + dots.softmax(0)) / 2 + cosine) / 2
    torch.testing.assert_close(bisoftmax_cosine(det, memo), expected)


def test_crossing_objects_keep_their_ids():
    tracker = MASATracker(init_score_thr=0.5, obj_score_thr=0.3, match_score_thr=0.5)
    ids = []
    for frame in range(1, 8):
        x = 10.0 * frame
        # Object A moves right, B moves left; they overlap around frame 4 and swap sides.
        boxes = [[x, 10, x + 20, 30], [80 - x, 12, 100 - x, 32]]
        embeds = [A, B] if frame % 2 else [B, A]  # input order changes too
        result = _ids(_step(tracker, frame, boxes if frame % 2 else boxes[::-1], embeds))
        ids.append((result[0], result[1]) if frame % 2 else (result[1], result[0]))
    assert len(set(ids)) == 1 and ids[0] == (1, 2)


@pytest.mark.parametrize(("gap", "same_id"), [(3, True), (5, False)])
def test_reappearing_object_keeps_its_id_only_within_the_memory(gap, same_id):
    tracker = MASATracker(init_score_thr=0.5, memo_tracklet_frames=5)
    first = _ids(_step(tracker, 1, [[0, 0, 10, 10], [50, 50, 60, 60]], [A, B]))
    frame = 1
    for frame in range(2, 2 + gap):  # A is gone (occluded or out of view), B stays
        _step(tracker, frame, [[50, 50, 60, 60]], [B])
    back = _ids(_step(tracker, frame + 1, [[0, 0, 10, 10], [50, 50, 60, 60]], [A, B]))
    assert back[1] == first[1]
    assert (back[0] == first[0]) is same_id
    if not same_id:
        assert back[0] == 3  # a new identity


def test_distractors_are_removed_and_low_scores_do_not_start_tracks():
    tracker = MASATracker(init_score_thr=0.8, distractor_score_thr=0.5, distractor_nms_thr=0.3)
    result = _step(
        tracker,
        1,
        [[0, 0, 10, 10], [1, 1, 11, 11], [40, 40, 50, 50], [60, 60, 70, 70]],
        [A, B, B, A],
        scores=[0.9, 0.4, 0.4, 0.95],
    )
    # Box 1 overlaps box 0 (distractor); box 2 is alone but below init_score_thr.
    assert sorted(result.indices.tolist()) == [0, 3]
    assert result.ids.tolist() == [1, 2]  # in score order: box 3 (0.95) then box 0 (0.9)


def test_memory_momentum_and_categories():
    tracker = MASATracker(init_score_thr=0.5, memo_momentum=0.8, match_same_label=True)
    _step(tracker, 1, [[0, 0, 10, 10]], [A], labels=[1])
    new = torch.tensor([6.0, 2.0, 1.0])
    _step(tracker, 2, [[0, 0, 10, 10]], [new], labels=[1])
    torch.testing.assert_close(tracker.tracks[1].embed, 0.2 * A + 0.8 * new)
    other_class = _ids(_step(tracker, 3, [[0, 0, 10, 10]], [A], labels=[2]))
    assert other_class[0] == 2  # same look, other category: a new track
    tracker.reset()
    assert not tracker.tracks and tracker.num_tracks == 0


def test_invalid_settings_raise():
    with pytest.raises(ValueError, match="memo_momentum"):
        MASATracker(memo_momentum=1.5)
    with pytest.raises(ValueError, match="memo_tracklet_frames"):
        MASATracker(memo_tracklet_frames=-1)


def test_labels_are_not_gated_by_default():
    tracker = MASATracker(init_score_thr=0.5)
    _step(tracker, 1, [[0, 0, 10, 10]], [A], labels=[1])
    assert _ids(_step(tracker, 2, [[0, 0, 10, 10]], [A], labels=[2])) == {0: 1}  # as MasaTaoTracker


def test_spatial_gate_grows_with_the_gap_and_decays_beyond():
    tracker = MASATracker(max_distance=100, fps=30)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [150.0, 0.0, 160.0, 10.0]])
    memo = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    near, far = tracker.distance_gate(boxes, memo, torch.tensor([0])).flatten().tolist()
    assert near == 1.0
    assert far == pytest.approx(torch.exp(torch.tensor(-(150.0 - 100.0) / (100 / 30))).item())
    # 5 frames apart the reach is 100 * exp(5 / 5) = 272 px: the far box is inside.
    assert tracker.distance_gate(boxes, memo, torch.tensor([5])).flatten().tolist() == [1.0, 1.0]


def test_spatial_gating_breaks_a_far_match():
    results = []
    for max_distance in (-1, 100):
        tracker = MASATracker(init_score_thr=0.5, max_distance=max_distance, fps=30)
        _step(tracker, 1, [[0, 0, 10, 10]], [A])
        results.append(_ids(_step(tracker, 2, [[400, 0, 410, 10]], [A])))
    assert results == [{0: 1}, {0: 2}]  # same look: one track without gating; 400 px away: a new one with it


def test_empty_frames_do_not_age_the_memory():
    """As the reference, a frame without detections skips the memory update: no eviction then."""
    tracker = MASATracker(init_score_thr=0.5, memo_tracklet_frames=2)
    _step(tracker, 1, [[0, 0, 10, 10]], [A])
    for frame in (2, 3, 4):
        assert len(_step(tracker, frame, [], []).ids) == 0
    assert _ids(_step(tracker, 5, [[0, 0, 10, 10]], [A])) == {0: 1}


@pytest.mark.parametrize(("backdrop_frames", "expected"), [(0, {0: 1}), (1, {})])
def test_bdd_backdrops_keep_background_off_tracks(backdrop_frames, expected):
    tracker = MASABDDTracker(
        init_score_thr=0.5, obj_score_thr=0.3, match_score_thr=0.4, memo_backdrop_frames=backdrop_frames
    )
    # Frame 1: A starts a track; B (0.4, below init_score_thr) is unmatched: a backdrop when remembered.
    assert _ids(_step(tracker, 1, [[0, 0, 10, 10], [50, 50, 60, 60]], [A, B], scores=[0.9, 0.4])) == {0: 1}
    assert len(tracker.backdrops) == backdrop_frames
    # Frame 2: B again (0.45). Against A alone its bi-softmax is 1 and it would continue A's track; with its
    # backdrop in the memory it matches the backdrop best and stays off tracks.
    assert _ids(_step(tracker, 2, [[50, 50, 60, 60]], [B], scores=[0.45])) == expected


def test_bdd_drops_low_scores_that_match_a_track():
    tracker = MASABDDTracker(
        init_score_thr=0.5, obj_score_thr=0.3, match_score_thr=0.01, nms_conf_thr=0.6, match_metric="cosine"
    )
    _step(tracker, 1, [[0, 0, 10, 10]], [A], scores=[0.9])
    # A low-score look-alike matches A's track at 1 > nms_conf_thr: dropped, not remembered as a backdrop.
    assert len(_step(tracker, 2, [[200, 200, 210, 210]], [A], scores=[0.2]).ids) == 0
    assert len(tracker.backdrops[0][0]) == 0
    # An unlike one matches at cosine 1/65 (above match_score_thr, below nms_conf_thr): background.
    assert len(_step(tracker, 3, [[200, 200, 210, 210]], [B], scores=[0.2]).ids) == 0
    assert len(tracker.backdrops[0][0]) == 1


def test_bdd_removes_cross_class_duplicates():
    tracker = MASABDDTracker(init_score_thr=0.5, nms_class_iou_thr=0.7)
    result = _step(tracker, 1, [[0, 0, 10, 10], [0, 0, 10, 9.5]], [A, B], scores=[0.9, 0.8], labels=[0, 1])
    assert result.indices.tolist() == [0]  # IoU 0.95 > 0.7: the second box is dropped whatever its class


def test_build_tracker_presets_class_paths_and_errors():
    demo = build_tracker({"preset": "demo"})
    assert isinstance(demo, MASATracker) and (demo.max_distance, demo.fps, demo.init_score_thr) == (100, 30, 0.1)
    assert build_tracker({"preset": "tao", "fps": 5}).fps == 5
    bdd = build_tracker({"preset": "bdd"})
    assert isinstance(bdd, MASABDDTracker) and bdd.match_score_thr == 0.6
    path = build_tracker(
        {"class_path": "samlab.models.masa.tracker.MASABDDTracker", "init_args": {"nms_conf_thr": 0.2}}
    )
    assert isinstance(path, MASABDDTracker) and path.nms_conf_thr == 0.2
    assert build_tracker(None) == MASATracker()
    with pytest.raises(ValueError, match="unknown tracker preset 'mot'"):
        build_tracker({"preset": "mot"})
    with pytest.raises(ValueError, match="is not MASATracker"):
        build_tracker({"class_path": "collections.OrderedDict"})
    with pytest.raises(TypeError, match="with_cats"):
        build_tracker({"with_cats": True})
    with pytest.raises(ValueError, match="match_metric"):
        MASABDDTracker(match_metric="l2")
    with pytest.raises(ValueError, match="max_distance"):
        MASATracker(max_distance=-5)


def test_yaml_tracker_block_selects_the_tracker():
    """``model.init_args.tracker`` of a config: a preset (demo gating, BDD) or a class_path."""
    from samlab.models.masa.module import MASAModule

    tiny = {"backbone": "resnet18", "image_size": 64, "channels": 16, "fusion_blocks": 1, "fc_channels": 32}
    demo = MASAModule(**tiny, tracker={"preset": "demo"}).make_tracker()
    assert isinstance(demo, MASATracker) and (demo.max_distance, demo.fps) == (100, 30)
    path = {"class_path": "samlab.models.masa.tracker.MASABDDTracker", "init_args": {"memo_backdrop_frames": 2}}
    bdd = MASAModule(**tiny, tracker=path).make_tracker()
    assert isinstance(bdd, MASABDDTracker) and bdd.memo_backdrop_frames == 2
    with pytest.raises(ValueError, match="unknown tracker preset"):
        MASAModule(**tiny, tracker={"preset": "sort"})

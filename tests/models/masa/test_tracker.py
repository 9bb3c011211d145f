"""MASATracker: identities through crossings, re-appearance inside and beyond the memory, distractors, momentum."""

from __future__ import annotations

import pytest
import torch

from samlab.models.masa.tracker import MASATracker

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
    tracker = MASATracker()
    det = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    memo = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    dots = det @ memo.T
    cosine = torch.tensor([[1.0, 2**-0.5], [0.0, 2**-0.5]])
    expected = ((dots.softmax(1) + dots.softmax(0)) / 2 + cosine) / 2
    torch.testing.assert_close(tracker.match_scores(det, memo), expected)


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
    tracker = MASATracker(init_score_thr=0.5, memo_momentum=0.8, with_cats=True)
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

"""``MASATracker``: associate per-frame detections through their MASA embeddings (MASA's ``MasaTaoTracker``).

Per frame: detections are sorted by score; low-score boxes that overlap a higher-score box are removed as
distractors; the match score between detection ``i`` and track ``j`` is the mean of the bi-softmax
``(softmax_rows(E D^T) + softmax_cols(E D^T)) / 2`` of the embeddings' dot products and of their cosine similarity,
as MASA's code does; each detection, in score order, takes its best track when that score exceeds
``match_score_thr`` and its own score exceeds ``obj_score_thr`` (the track is then taken from the others); unmatched
detections scoring above ``init_score_thr`` start new tracks. A track's embedding is updated as
``(1 - memo_momentum) * old + memo_momentum * new``; a track unseen for ``memo_tracklet_frames`` frames is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou


@dataclass
class TrackedDetections:
    """The detections of one frame that belong to a track: ``indices`` ``[M]`` into the frame's input detections,
    ``ids`` ``[M]`` int64 track ids (from 1), ``boxes`` ``[M, 4]``, ``scores`` ``[M]``, ``labels`` ``[M]``."""

    indices: torch.Tensor
    ids: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


@dataclass
class _Track:
    box: torch.Tensor
    embed: torch.Tensor
    label: int
    score: float
    last_frame: int


@dataclass
class MASATracker:
    """MASA's tracker over embedded detections; call :meth:`step` once per frame, in order.

    Args:
        init_score_thr: a detection scoring above this starts a new track when it matches none.
        obj_score_thr: a detection must score above this to continue a track.
        match_score_thr: a match needs a match score above this.
        memo_tracklet_frames: a track not seen for this many frames is forgotten.
        memo_momentum: weight of the new embedding in a track's memory (MASA: 0.8).
        distractor_score_thr: detections scoring below this are checked as distractors.
        distractor_nms_thr: such a detection overlapping (IoU above this) a higher-score one is dropped.
        with_cats: match only detections and tracks of the same label.
    """

    init_score_thr: float = 0.8
    obj_score_thr: float = 0.5
    match_score_thr: float = 0.5
    memo_tracklet_frames: int = 10
    memo_momentum: float = 0.8
    distractor_score_thr: float = 0.5
    distractor_nms_thr: float = 0.3
    with_cats: bool = True
    tracks: dict[int, _Track] = field(default_factory=dict, init=False, repr=False)
    num_tracks: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.memo_momentum <= 1.0:
            raise ValueError(f"memo_momentum must be in [0, 1], got {self.memo_momentum}")
        if self.memo_tracklet_frames < 0:
            raise ValueError(f"memo_tracklet_frames must be >= 0, got {self.memo_tracklet_frames}")

    def reset(self) -> None:
        """Forget every track (start of a new video)."""
        self.tracks = {}
        self.num_tracks = 0

    def _remove_distractors(self, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Keep-mask of score-sorted detections: a low-score box overlapping any higher-score box is a distractor."""
        keep = torch.ones(len(boxes), dtype=torch.bool)
        low = torch.nonzero(scores < self.distractor_score_thr).flatten()
        if len(low):
            iou = box_iou(boxes[low], boxes)
            for row, index in enumerate(low.tolist()):
                if (iou[row, :index] > self.distractor_nms_thr).any():
                    keep[index] = False
        return keep

    def match_scores(self, embeds: torch.Tensor, memo_embeds: torch.Tensor) -> torch.Tensor:
        """``[N, M]`` match scores of detection embeddings ``[N, D]`` against track embeddings ``[M, D]``: the mean of
        the bi-softmax of dot products and of the cosine similarity."""
        dots = embeds @ memo_embeds.T
        bisoftmax = (dots.softmax(dim=1) + dots.softmax(dim=0)) / 2
        cosine = F.normalize(embeds, dim=1) @ F.normalize(memo_embeds, dim=1).T
        return (bisoftmax + cosine) / 2

    def step(
        self,
        frame_id: int,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        labels: torch.Tensor,
        embeds: torch.Tensor,
    ) -> TrackedDetections:
        """Track the detections of frame ``frame_id`` (increasing integers).

        ``boxes`` ``[N, 4]`` x1 y1 x2 y2, ``scores`` ``[N]``, ``labels`` ``[N]`` int, ``embeds`` ``[N, D]`` (CPU or
        any device; results are on the CPU). Returns the detections that belong to a track, with their ids.
        """
        boxes, scores, labels, embeds = (t.detach().cpu() for t in (boxes, scores, labels, embeds))
        embeds = embeds.float()
        order = scores.argsort(descending=True, stable=True)
        keep = self._remove_distractors(boxes[order], scores[order])
        order = order[keep]
        boxes, scores, labels, embeds = boxes[order], scores[order], labels[order], embeds[order]
        ids = torch.full((len(order),), -1, dtype=torch.long)
        if len(order) and self.tracks:
            memo_ids = list(self.tracks)
            memo_embeds = torch.stack([self.tracks[i].embed for i in memo_ids])
            match = self.match_scores(embeds, memo_embeds)
            if self.with_cats:
                memo_labels = torch.tensor([self.tracks[i].label for i in memo_ids])
                match = match * (labels[:, None] == memo_labels[None, :])
            for i in range(len(order)):
                conf, column = match[i].max(dim=0)
                if conf > self.match_score_thr and scores[i] > self.obj_score_thr:
                    ids[i] = memo_ids[int(column)]
                    match[:, column] = 0
        new = (ids == -1) & (scores > self.init_score_thr)
        count = int(new.sum())
        ids[new] = torch.arange(self.num_tracks + 1, self.num_tracks + 1 + count)
        self.num_tracks += count
        self._update(frame_id, ids, boxes, scores, labels, embeds)
        tracked = ids > -1
        return TrackedDetections(
            indices=order[tracked],
            ids=ids[tracked],
            boxes=boxes[tracked],
            scores=scores[tracked],
            labels=labels[tracked],
        )

    def _update(
        self,
        frame_id: int,
        ids: torch.Tensor,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        labels: torch.Tensor,
        embeds: torch.Tensor,
    ) -> None:
        for k in torch.nonzero(ids > -1).flatten().tolist():
            track_id = int(ids[k])
            track = self.tracks.get(track_id)
            if track is None:
                self.tracks[track_id] = _Track(boxes[k], embeds[k], int(labels[k]), float(scores[k]), frame_id)
            else:
                track.embed = (1 - self.memo_momentum) * track.embed + self.memo_momentum * embeds[k]
                track.box, track.label, track.score, track.last_frame = (
                    boxes[k],
                    int(labels[k]),
                    float(scores[k]),
                    frame_id,
                )
        stale = [i for i, t in self.tracks.items() if frame_id - t.last_frame >= self.memo_tracklet_frames]
        for track_id in stale:
            del self.tracks[track_id]

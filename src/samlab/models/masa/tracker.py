"""MASA's trackers: associate per-frame detections through their MASA embeddings.

:class:`MASATracker` gives the tracks of MASA's ``MasaTaoTracker`` (``masa/models/tracker/masa_tao_tracker.py``)
for every setting of its constructor; :class:`MASABDDTracker` those of ``MasaBDDTracker`` (``masa_bdd_tracker.py``).
Both are checked against golden outputs of the reference code (``tests/models/masa/golden/``).

Per frame (both trackers): detections are sorted by score; duplicates are removed (the TAO tracker drops a
low-score box overlapping a higher-score box, the BDD tracker drops any box overlapping a higher-score one above a
score-dependent IoU); the match score between detection ``i`` and memory entry ``j`` is, for the TAO tracker, the
mean of the bi-softmax ``(softmax_rows(E M^T) + softmax_cols(E M^T)) / 2`` of the embeddings' dot products and of
their cosine similarity; each detection, in score order, takes its best track when that score exceeds
``match_score_thr`` and its own score exceeds ``obj_score_thr`` (the track is then taken from the others);
unmatched detections scoring above ``init_score_thr`` start new tracks. A track's embedding is updated as
``(1 - memo_momentum) * old + memo_momentum * new``; a track unseen for ``memo_tracklet_frames`` frames is dropped.
A frame without any detection changes nothing (as the reference, which returns before its memory update).

Track ids count from 1 (MOTChallenge ids are positive); the reference counts from 0, so its id ``k`` is ``k + 1``
here. Category gating (``match_same_label``) is off by default: ``MasaTaoTracker`` stores ``with_cats`` but never
uses it, ``MasaBDDTracker`` uses it and defaults to off.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

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


def bisoftmax_cosine(embeds: torch.Tensor, memo_embeds: torch.Tensor) -> torch.Tensor:
    """``[N, M]`` match scores of detection embeddings ``[N, D]`` against memory embeddings ``[M, D]``: the mean of
    the bi-softmax of dot products and of the cosine similarity (MASA's TAO tracker)."""
    return (bisoftmax(embeds, memo_embeds) + cosine(embeds, memo_embeds)) / 2


def bisoftmax(embeds: torch.Tensor, memo_embeds: torch.Tensor) -> torch.Tensor:
    """``[N, M]`` mean of the row and column softmax of the dot products ``embeds @ memo_embeds.T``."""
    dots = embeds @ memo_embeds.T
    return (dots.softmax(dim=1) + dots.softmax(dim=0)) / 2


def cosine(embeds: torch.Tensor, memo_embeds: torch.Tensor) -> torch.Tensor:
    """``[N, M]`` cosine similarity of ``embeds`` ``[N, D]`` and ``memo_embeds`` ``[M, D]``."""
    return F.normalize(embeds, dim=1) @ F.normalize(memo_embeds, dim=1).T


def row_softmax(embeds: torch.Tensor, memo_embeds: torch.Tensor) -> torch.Tensor:
    """``[N, M]`` softmax over the memory of the dot products ``embeds @ memo_embeds.T``."""
    return (embeds @ memo_embeds.T).softmax(dim=1)


@dataclass
class _EmbeddingTracker(ABC):
    """Memory, score order, greedy matching and track start shared by :class:`MASATracker` and
    :class:`MASABDDTracker`; subclasses remove duplicates and score matches."""

    init_score_thr: float = 0.8
    obj_score_thr: float = 0.5
    match_score_thr: float = 0.5
    memo_tracklet_frames: int = 10
    memo_momentum: float = 0.8
    match_same_label: bool = False
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

    @abstractmethod
    def _keep(self, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``[N]`` bool keep-mask of the score-sorted detections (duplicate removal)."""

    def _memory(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Memory entries: ids ``[M]`` (-1 for entries that are no track), boxes, embeddings, labels."""
        ids = list(self.tracks)
        return (
            torch.tensor(ids, dtype=torch.long),
            torch.stack([self.tracks[i].box for i in ids]),
            torch.stack([self.tracks[i].embed for i in ids]),
            torch.tensor([self.tracks[i].label for i in ids], dtype=torch.long),
        )

    @abstractmethod
    def _match_scores(
        self,
        frame_id: int,
        boxes: torch.Tensor,
        embeds: torch.Tensor,
        memo_boxes: torch.Tensor,
        memo_embeds: torch.Tensor,
    ) -> torch.Tensor:
        """``[N, M]`` match scores of the frame's detections against the memory."""

    def _low_score_match(self, conf: torch.Tensor) -> int:
        """The id given to a detection whose best match (score ``conf``) is a track but whose own score is too low
        to continue it: -1 (it may still start a track)."""
        return -1

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
        boxes, scores, labels, embeds = boxes.float(), scores.float(), labels.long(), embeds.float()
        if len(boxes) == 0:
            empty = torch.zeros(0, dtype=torch.long)
            return TrackedDetections(empty, empty.clone(), boxes, scores, labels)
        order = scores.argsort(descending=True, stable=True)
        order = order[self._keep(boxes[order], scores[order], labels[order])]
        boxes, scores, labels, embeds = boxes[order], scores[order], labels[order], embeds[order]
        ids = torch.full((len(order),), -1, dtype=torch.long)
        if self.tracks:
            memo_ids, memo_boxes, memo_embeds, memo_labels = self._memory()
            match = self._match_scores(frame_id, boxes, embeds, memo_boxes, memo_embeds)
            if self.match_same_label:
                match = match * (labels[:, None] == memo_labels[None, :])
            for i in range(len(order)):
                conf, column = torch.max(match[i], dim=0)
                track_id = int(memo_ids[column])
                if conf > self.match_score_thr and track_id > -1:
                    if scores[i] > self.obj_score_thr:
                        ids[i] = track_id
                        match[:i, column] = 0
                        match[i + 1 :, column] = 0
                    else:
                        ids[i] = self._low_score_match(conf)
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


@dataclass
class MASATracker(_EmbeddingTracker):
    """MASA's TAO / open-vocabulary / plug-and-play tracker (``MasaTaoTracker``); call :meth:`step` once per frame.

    Args:
        init_score_thr: a detection scoring above this starts a new track when it matches none.
        obj_score_thr: a detection must score above this to continue a track.
        match_score_thr: a match needs a match score above this.
        memo_tracklet_frames: a track not seen for this many frames is forgotten.
        memo_momentum: weight of the new embedding in a track's memory (MASA: 0.8).
        distractor_score_thr: detections scoring below this are checked as distractors.
        distractor_nms_thr: such a detection overlapping (IoU above this) a higher-score one is dropped.
        max_distance: spatial gating in pixels (MASA's plug-and-play demo: 100); -1 turns it off. A track's match
            score is multiplied by 1 while the box centres are within ``max_distance * exp(frames_apart /
            (fps / 6))`` and by ``exp(-excess / (100 / fps))`` beyond.
        fps: frame rate of the video, for the gating's growth and smoothing (demo: 30).
        match_same_label: match only detections and tracks of the same label (not in MASA's TAO tracker).

    Presets of MASA's configs: :data:`TRACKER_PRESETS`.
    """

    distractor_score_thr: float = 0.5
    distractor_nms_thr: float = 0.3
    max_distance: float = -1
    fps: float = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.max_distance != -1 and self.max_distance < 0:
            raise ValueError(f"max_distance must be >= 0 or -1 (no spatial gating), got {self.max_distance}")

    def _keep(self, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        keep = torch.ones(len(boxes), dtype=torch.bool)
        low = torch.nonzero(scores < self.distractor_score_thr).flatten()
        if len(low):
            iou = box_iou(boxes[low], boxes)
            for row, index in enumerate(low.tolist()):
                if (iou[row, :index] > self.distractor_nms_thr).any():
                    keep[index] = False
        return keep

    def distance_gate(self, boxes: torch.Tensor, memo_boxes: torch.Tensor, frames_apart: torch.Tensor) -> torch.Tensor:
        """``[N, M]`` soft spatial gate in ``(0, 1]`` of detections ``[N, 4]`` against track boxes ``[M, 4]`` last seen
        ``frames_apart`` ``[M]`` frames ago (``max_distance`` grown by ``exp(frames_apart / (fps / 6))``, decaying
        as ``exp(-excess / (100 / fps))`` beyond)."""
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
        memo_centres = (memo_boxes[:, :2] + memo_boxes[:, 2:]) / 2.0
        distances = torch.cdist(centres, memo_centres)
        reach = self.max_distance * torch.exp(frames_apart.abs().float()[None, :] / (self.fps / 6))
        return torch.where(
            distances <= reach, torch.ones_like(distances), torch.exp(-(distances - reach) / (100 / self.fps))
        )

    def _match_scores(
        self,
        frame_id: int,
        boxes: torch.Tensor,
        embeds: torch.Tensor,
        memo_boxes: torch.Tensor,
        memo_embeds: torch.Tensor,
    ) -> torch.Tensor:
        match = bisoftmax_cosine(embeds, memo_embeds)
        if self.max_distance != -1:
            last = torch.tensor([t.last_frame for t in self.tracks.values()], dtype=torch.long)
            match = match * self.distance_gate(boxes, memo_boxes, frame_id - last)
        return match


_MATCH_METRICS = {"bisoftmax": bisoftmax, "softmax": row_softmax, "cosine": cosine}


@dataclass
class MASABDDTracker(_EmbeddingTracker):
    """MASA's BDD100K tracker (``MasaBDDTracker``): backdrops and cross-class duplicate removal.

    Args (besides :class:`MASATracker`'s first five):
        memo_backdrop_frames: unmatched, non-overlapping detections of this many last frames stay in the memory as
            backdrops: a detection whose best match is a backdrop continues no track (it may still start one).
        nms_conf_thr: a low-score detection (``obj_score_thr`` or below) matching a track above this is dropped
            (it neither starts a track nor becomes a backdrop).
        nms_backdrop_iou_thr: a low-score detection overlapping a higher-score one above this IoU is dropped; an
            unmatched one overlapping an earlier detection above it is not remembered as a backdrop.
        nms_class_iou_thr: a detection scoring above ``obj_score_thr`` overlapping a higher-score one above this
            IoU is dropped, whatever the classes.
        match_metric: ``bisoftmax`` (default), ``softmax`` (over the memory) or ``cosine``.
        match_same_label: match only detections and memory entries of the same label (MASA's ``with_cats``).
    """

    memo_backdrop_frames: int = 1
    nms_conf_thr: float = 0.5
    nms_backdrop_iou_thr: float = 0.3
    nms_class_iou_thr: float = 0.7
    match_metric: Literal["bisoftmax", "softmax", "cosine"] = "bisoftmax"
    backdrops: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(
        default_factory=list, init=False, repr=False
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.memo_backdrop_frames < 0:
            raise ValueError(f"memo_backdrop_frames must be >= 0, got {self.memo_backdrop_frames}")
        if self.match_metric not in _MATCH_METRICS:
            raise ValueError(f"match_metric must be one of {sorted(_MATCH_METRICS)}, got {self.match_metric!r}")

    def reset(self) -> None:
        """Forget every track and backdrop (start of a new video)."""
        super().reset()
        self.backdrops = []

    def _keep(self, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        keep = torch.ones(len(boxes), dtype=torch.bool)
        iou = box_iou(boxes, boxes)
        for i in range(1, len(boxes)):
            thr = self.nms_backdrop_iou_thr if scores[i] < self.obj_score_thr else self.nms_class_iou_thr
            if (iou[i, :i] > thr).any():
                keep[i] = False
        return keep

    def _memory(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, boxes, embeds, labels = super()._memory()
        for back_boxes, back_embeds, back_labels in self.backdrops:
            ids = torch.cat([ids, torch.full((len(back_boxes),), -1, dtype=torch.long)])
            boxes, embeds, labels = (
                torch.cat([boxes, back_boxes]),
                torch.cat([embeds, back_embeds]),
                torch.cat([labels, back_labels]),
            )
        return ids, boxes, embeds, labels

    def _match_scores(
        self,
        frame_id: int,
        boxes: torch.Tensor,
        embeds: torch.Tensor,
        memo_boxes: torch.Tensor,
        memo_embeds: torch.Tensor,
    ) -> torch.Tensor:
        return _MATCH_METRICS[self.match_metric](embeds, memo_embeds)

    def _low_score_match(self, conf: torch.Tensor) -> int:
        return -2 if conf > self.nms_conf_thr else -1

    def _update(
        self,
        frame_id: int,
        ids: torch.Tensor,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        labels: torch.Tensor,
        embeds: torch.Tensor,
    ) -> None:
        super()._update(frame_id, ids, boxes, scores, labels, embeds)
        candidates = torch.nonzero(ids == -1).flatten()
        iou = box_iou(boxes[candidates], boxes)
        kept = [int(k) for row, k in enumerate(candidates) if not (iou[row, :k] > self.nms_backdrop_iou_thr).any()]
        self.backdrops.insert(0, (boxes[kept], embeds[kept], labels[kept]))
        if len(self.backdrops) > self.memo_backdrop_frames:
            self.backdrops.pop()


Tracker = MASATracker | MASABDDTracker

# MASA's released tracker settings (configs/masa-*/): TAO/TETA tests, the plug-and-play demo, BDD100K tests.
TRACKER_PRESETS: dict[str, tuple[type[_EmbeddingTracker], dict[str, Any]]] = {
    "tao": (MASATracker, {"init_score_thr": 0.0001, "obj_score_thr": 0.0001, "match_score_thr": 0.5}),
    "demo": (
        MASATracker,
        {"init_score_thr": 0.1, "obj_score_thr": 0.01, "match_score_thr": 0.5, "max_distance": 100, "fps": 30},
    ),
    "bdd": (MASABDDTracker, {"init_score_thr": 0.5, "obj_score_thr": 0.3, "match_score_thr": 0.6}),
}


def build_tracker(settings: dict[str, Any] | None = None) -> Tracker:
    """A tracker from YAML-style ``settings``.

    ``settings``: ``{}`` / None (:class:`MASATracker` at its defaults), plain keyword arguments of
    :class:`MASATracker`, ``{"preset": "tao" | "demo" | "bdd", **overrides}`` (:data:`TRACKER_PRESETS`), or
    ``{"class_path": "samlab.models.masa.tracker.MASABDDTracker", "init_args": {...}}``. Unknown keys raise
    ``TypeError`` naming them; an unknown preset or class raises ``ValueError``.
    """
    settings = dict(settings or {})
    if "class_path" in settings:
        class_path = settings.pop("class_path")
        kwargs = dict(settings.pop("init_args", None) or {})
        if settings:
            raise TypeError(f"tracker settings with a class_path take only init_args, got {sorted(settings)}")
        module_name, _, class_name = str(class_path).rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError):
            raise ValueError(f"tracker class_path '{class_path}' cannot be imported") from None
        if not (isinstance(cls, type) and issubclass(cls, _EmbeddingTracker)):
            raise ValueError(f"tracker class_path '{class_path}' is not MASATracker or MASABDDTracker")
        return cls(**kwargs)
    if "preset" in settings:
        name = settings.pop("preset")
        if name not in TRACKER_PRESETS:
            raise ValueError(f"unknown tracker preset {name!r}; known: {', '.join(TRACKER_PRESETS)}")
        cls, preset = TRACKER_PRESETS[name]
        return cls(**{**preset, **settings})
    return MASATracker(**settings)

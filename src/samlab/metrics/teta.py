"""TETA (Track Every Thing Accuracy) on TAO-format ground truth and results, as SysCV/tet's ``teta`` defines it.

TETA = (LocA + AssocA + ClsA) / 3 (Li et al., "Tracking Every Thing in the Wild", ECCV 2022), with the settings
MASA's TAO evaluation uses (``teta.metrics.TETA(exhaustive=False)``, one IoU threshold 0.5 for false positives, no
cap on detections per image). Checked against numbers of the reference code (``tests/metrics/golden/``).

Per video, the timesteps are the ground-truth images that have annotations (by ``frame_index``); results on other
images of the video are ignored. Boxes are ``[x, y, w, h]``; similarities are IoUs.

- A class-agnostic pass matches ground-truth boxes to predictions per frame (Hungarian on IoU weighted by the
  ground-truth/prediction track alignment score, kept at IoU >= 0.5). A prediction matched there to a ground truth
  of another class is not counted against class ``c``.
- For class ``c``: predictions overlapping (IoU >= 0.5) a ground truth of class ``c`` in some frame take part in
  every frame of their track. Per localisation threshold ``alpha`` in 0, 0.05, ..., 0.95, frames are matched as
  above (kept at IoU >= alpha): LocA = TP / (TP + FN + FP), FP the overlapping predictions left unmatched;
  AssocA = sum over matches of the matched track pair's Jaccard (matched frames / (ground-truth frames +
  predicted frames - matched frames)) / TP; for alpha >= 0.5, ClsA = TP_c / (TP_c + FN_c + FP_c) where a match is
  TP_c when its predicted class is ``c`` (else FN_c, and an FP_c of the predicted class), averaged over alpha.
- Sequences combine by summing counts (AssocA weighted by TP); classes (those with ground truth; a class with
  nothing to count is skipped) are averaged; each figure is the mean over alpha, in percent.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

ALPHAS = np.arange(0.0, 0.99, 0.05)
"""The 20 localisation thresholds of TETA (0, 0.05, ..., 0.95)."""
_CLS_FROM = 10  # ClsA counts at thresholds ALPHAS[10:] (alpha >= 0.5)
_OVERLAP = 0.5  # a prediction with IoU >= this to a ground truth is "overlapping" (its FP candidates)
_EPS = np.finfo(float).eps

FIELDS = ("TETA", "LocA", "AssocA", "ClsA", "LocRe", "LocPr", "AssocRe", "AssocPr", "ClsRe", "ClsPr")
"""The figures :func:`teta` returns, in percent."""


@dataclass
class _Sequence:
    """One video: per timestep the ground-truth and predicted track ids, classes, and their IoUs."""

    gt_ids: list[np.ndarray]
    gt_classes: list[np.ndarray]
    tk_ids: list[np.ndarray]
    tk_classes: list[np.ndarray]
    ious: list[np.ndarray]


@dataclass
class _Counts:
    """Counts of one class over sequences: localisation per ALPHAS, classification per ALPHAS[10:]."""

    loc_tp: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    loc_fn: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    loc_fp: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    cls_tp: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS) - _CLS_FROM))
    cls_fn: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS) - _CLS_FROM))
    cls_fp: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS) - _CLS_FROM))
    # TP-weighted sums of the association figures, per ALPHAS
    assoc_a: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    assoc_re: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    assoc_pr: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))

    def empty(self) -> bool:
        return not (self.loc_tp + self.loc_fn + self.loc_fp > _EPS).any()

    def figures(self) -> dict[str, np.ndarray]:
        """Per-alpha LocA/AssocA/TETA... (ClsA and its recall and precision averaged over alpha >= 0.5)."""
        loc_all = self.loc_tp + self.loc_fn + self.loc_fp
        cls_tp = self.cls_tp
        out = {
            "LocRe": self.loc_tp / np.maximum(1, self.loc_tp + self.loc_fn),
            "LocPr": self.loc_tp / np.maximum(1, self.loc_tp + self.loc_fp),
            "LocA": self.loc_tp / np.maximum(1, loc_all),
            "AssocA": self.assoc_a / np.maximum(1, self.loc_tp),
            "AssocRe": self.assoc_re / np.maximum(1, self.loc_tp),
            "AssocPr": self.assoc_pr / np.maximum(1, self.loc_tp),
            "ClsRe": np.mean(cls_tp / np.maximum(1, cls_tp + self.cls_fn)),
            "ClsPr": np.mean(cls_tp / np.maximum(1, cls_tp + self.cls_fp)),
            "ClsA": np.mean(cls_tp / np.maximum(1, cls_tp + self.cls_fn + self.cls_fp)),
        }
        out["TETA"] = (out["LocA"] + out["AssocA"] + out["ClsA"]) / 3
        return out


def _box_ious(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``[G, P]`` IoUs of ``[x, y, w, h]`` boxes (0 where a box has no area)."""
    a, b = gt.copy(), pred.copy()
    a[:, 2:] += a[:, :2]
    b[:, 2:] += b[:, :2]
    inter_w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    inter_h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(inter_w, 0) * np.maximum(inter_h, 0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    inter[area_a <= _EPS, :] = 0
    inter[:, area_b <= _EPS] = 0
    inter[union <= _EPS] = 0
    union[union <= _EPS] = 1
    return inter / union


def _unique_track_ids(results: list[dict[str, Any]]) -> list[int]:
    """The results' track ids, those used in more than one video renumbered per (id, video) after the largest id
    (in order of first appearance), as TAO's tools do."""
    first_video: dict[int, Any] = {}
    shared: set[int] = set()
    for r in results:
        first_video.setdefault(r["track_id"], r["video_id"])
        if r["video_id"] != first_video[r["track_id"]]:
            shared.add(r["track_id"])
    if not shared:
        return [r["track_id"] for r in results]
    counter = itertools.count(max(first_video) + 1)
    renamed: dict[tuple[int, Any], int] = defaultdict(lambda: next(counter))
    return [renamed[r["track_id"], r["video_id"]] if r["track_id"] in shared else r["track_id"] for r in results]


def _sequences(gt: dict[str, Any], results: list[dict[str, Any]]) -> tuple[list[_Sequence], dict[int, str]]:
    """Per video the timesteps (annotated ground-truth images by frame index) and the scored classes (id → name,
    the categories with ground truth after merging TAO's merged categories)."""
    merge = {m["id"]: c["id"] for c in gt["categories"] for m in c.get("merged", [])}
    images = {i["id"]: i for i in gt["images"]}
    results = [{**r, "video_id": r.get("video_id", images[r["image_id"]]["video_id"])} for r in results]
    track_ids = _unique_track_ids(results)
    gt_by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for ann in gt["annotations"]:
        gt_by_image[ann["image_id"]].append(ann)
    res_by_image: dict[Any, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for track_id, r in zip(track_ids, results):
        if any(t == track_id for t, _ in res_by_image[r["image_id"]]):
            raise ValueError(f"track id {r['track_id']} appears twice in image {r['image_id']}")
        res_by_image[r["image_id"]].append((track_id, r))
    seen = {merge.get(a["category_id"], a["category_id"]) for a in gt["annotations"]}
    classes = {c["id"]: c["name"] for c in gt["categories"] if c["id"] in seen}
    sequences = []
    for video in gt["videos"]:
        frames = sorted(
            (i for i in gt["images"] if i["video_id"] == video["id"] and i["id"] in gt_by_image),
            key=lambda i: i["frame_index"],
        )
        seq = _Sequence([], [], [], [], [])
        for image in frames:
            anns, preds = gt_by_image[image["id"]], res_by_image.get(image["id"], [])
            seq.gt_ids.append(np.array([a["track_id"] for a in anns], dtype=int))
            seq.gt_classes.append(np.array([merge.get(a["category_id"], a["category_id"]) for a in anns], dtype=int))
            seq.tk_ids.append(np.array([t for t, _ in preds], dtype=int))
            seq.tk_classes.append(np.array([merge.get(r["category_id"], r["category_id"]) for _, r in preds], int))
            gt_boxes = np.array([a["bbox"] for a in anns], dtype=float).reshape(-1, 4)
            pred_boxes = np.array([r["bbox"] for _, r in preds], dtype=float).reshape(-1, 4)
            seq.ious.append(_box_ious(gt_boxes, pred_boxes))
        sequences.append(seq)
    return sequences, classes


@dataclass
class _ClassView:
    """One sequence seen for one class: contiguous ids, the overlapping predictions per timestep, their IoUs."""

    gt_ids: list[np.ndarray]
    tk_ids: list[np.ndarray]
    tk_classes: list[np.ndarray]
    overlap_ids: list[np.ndarray]  # contiguous ids of the predictions that may be FPs
    ious: list[np.ndarray]
    gt_original: np.ndarray  # contiguous → original ids
    tk_original: np.ndarray
    num_overlap: int
    num_gt: int


def _class_view(seq: _Sequence, class_id: int | None, assignment: list[dict[int, int]] | None) -> _ClassView:
    """``seq`` restricted to ground truth of ``class_id`` (None: all) and to the predictions overlapping it
    somewhere; predictions ``assignment`` matched to ground truth of other classes are not overlapping."""
    masks = [np.ones(len(c), bool) if class_id is None else c == class_id for c in seq.gt_classes]
    overlap: list[set[int]] = []
    for t, mask in enumerate(masks):
        ids = set(seq.tk_ids[t][(seq.ious[t][mask] >= _OVERLAP).any(axis=0)].tolist())
        if assignment is not None:
            taken_elsewhere = set(assignment[t]) - set(seq.gt_ids[t][mask].tolist())
            ids -= {assignment[t][g] for g in taken_elsewhere}
        overlap.append(ids)
    kept_tracks = np.array(sorted(set().union(*overlap)), dtype=int)
    gt_ids, tk_ids, tk_classes, ious = [], [], [], []
    for t, mask in enumerate(masks):
        keep = np.isin(seq.tk_ids[t], kept_tracks)
        gt_ids.append(seq.gt_ids[t][mask])
        tk_ids.append(seq.tk_ids[t][keep])
        tk_classes.append(seq.tk_classes[t][keep])
        ious.append(seq.ious[t][mask][:, keep])
    gt_original = np.unique(np.concatenate(gt_ids)) if gt_ids else np.zeros(0, int)
    tk_original = np.unique(np.concatenate(tk_ids)) if tk_ids else np.zeros(0, int)
    return _ClassView(
        gt_ids=[np.searchsorted(gt_original, g) for g in gt_ids],
        tk_ids=[np.searchsorted(tk_original, k) for k in tk_ids],
        tk_classes=tk_classes,
        overlap_ids=[np.searchsorted(tk_original, np.array(sorted(o), dtype=int)) for o in overlap],
        ious=ious,
        gt_original=gt_original,
        tk_original=tk_original,
        num_overlap=sum(len(o) for o in overlap),
        num_gt=sum(len(g) for g in gt_ids),
    )


def _alignment(view: _ClassView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Track alignment scores ``[G, T]`` (soft Jaccard of the ground-truth and predicted tracks over the video) and
    the detections per ground-truth ``[G, 1]`` and predicted ``[1, T]`` track."""
    matches = np.zeros((len(view.gt_original), len(view.tk_original)))
    gt_count = np.zeros((len(view.gt_original), 1))
    tk_count = np.zeros((1, len(view.tk_original)))
    for gt_ids, tk_ids, iou in zip(view.gt_ids, view.tk_ids, view.ious):
        denom = iou.sum(0, keepdims=True) + iou.sum(1, keepdims=True) - iou
        soft = np.zeros_like(iou)
        mask = denom > _EPS
        soft[mask] = iou[mask] / denom[mask]
        matches[gt_ids[:, None], tk_ids[None, :]] += soft
        gt_count[gt_ids] += 1
        tk_count[0, tk_ids] += 1
    return matches / (gt_count + tk_count - matches), gt_count, tk_count


def _matches(
    alignment: np.ndarray, gt_ids: np.ndarray, tk_ids: np.ndarray, iou: np.ndarray, alphas: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per threshold, the (row, column) pairs of one timestep's Hungarian matching kept at IoU >= alpha."""
    rows, cols = linear_sum_assignment(-(alignment[gt_ids[:, None], tk_ids[None, :]] * iou))
    kept = [iou[rows, cols] >= alpha - _EPS for alpha in alphas]
    return [(rows[k], cols[k]) for k in kept]


def _assignment(seq: _Sequence) -> list[dict[int, int]]:
    """Class-agnostic matches at IoU 0.5 per timestep: original ground-truth id → original predicted id."""
    view = _class_view(seq, None, None)
    if view.num_overlap == 0 or view.num_gt == 0:
        return [{} for _ in seq.gt_ids]
    alignment = _alignment(view)[0]
    out = []
    for gt_ids, tk_ids, iou in zip(view.gt_ids, view.tk_ids, view.ious):
        [(rows, cols)] = _matches(alignment, gt_ids, tk_ids, iou, np.array([0.5]))
        out.append(dict(zip(view.gt_original[gt_ids[rows]].tolist(), view.tk_original[tk_ids[cols]].tolist())))
    return out


def _count_class(
    seq: _Sequence, class_id: int, assignment: list[dict[int, int]], counts: _Counts, wrong: dict[int, np.ndarray]
) -> None:
    """Add the counts of class ``class_id`` in ``seq`` to ``counts``; wrongly classified matches add to
    ``wrong[predicted class]`` (the FP_c of that class)."""
    view = _class_view(seq, class_id, assignment)
    if view.num_overlap == 0:
        counts.loc_fn += view.num_gt
        return
    if view.num_gt == 0:
        return
    alignment, gt_count, tk_count = _alignment(view)
    matched = [np.zeros_like(alignment) for _ in ALPHAS]
    tp = np.zeros(len(ALPHAS))
    for t, (gt_ids, tk_ids) in enumerate(zip(view.gt_ids, view.tk_ids)):
        if len(gt_ids) == 0:
            continue
        per_alpha = _matches(alignment, gt_ids, tk_ids, view.ious[t], ALPHAS)
        candidates = set(view.overlap_ids[t].tolist())
        for a, (rows, cols) in enumerate(per_alpha):
            predicted = view.tk_classes[t][cols]
            if a >= _CLS_FROM:
                for other in predicted[predicted != class_id]:
                    if int(other) in wrong:
                        wrong[int(other)][a - _CLS_FROM] += 1
                right = int(np.sum(predicted == class_id))
                counts.cls_tp[a - _CLS_FROM] += right
                counts.cls_fn[a - _CLS_FROM] += len(rows) - right
            tp[a] += len(rows)
            counts.loc_fn[a] += len(gt_ids) - len(rows)
            counts.loc_fp[a] += len(candidates - set(tk_ids[cols].tolist()))
            matched[a][gt_ids[rows], tk_ids[cols]] += 1
    counts.loc_tp += tp
    for a, m in enumerate(matched):
        # the TP-weighted association figures of this sequence (combined over sequences by TP)
        counts.assoc_a[a] += np.sum(m * m / np.maximum(1, gt_count + tk_count - m)) / max(1, tp[a]) * tp[a]
        counts.assoc_re[a] += np.sum(m * m / np.maximum(1, gt_count)) / max(1, tp[a]) * tp[a]
        counts.assoc_pr[a] += np.sum(m * m / np.maximum(1, tk_count)) / max(1, tp[a]) * tp[a]


def teta(gt: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """TETA of TAO-format ``results`` against ``gt`` (as :mod:`samlab.data.formats.tao` reads them).

    Returns :data:`FIELDS` in percent (TETA, LocA, AssocA, ClsA and the recalls and precisions of each part),
    averaged over the classes with ground truth, plus ``"per_class": {name: {same keys}}``. Raises ``ValueError``
    for a track id used twice in one image.
    """
    sequences, classes = _sequences(gt, results)
    totals = {c: _Counts() for c in classes}
    for seq in sequences:
        assignment = _assignment(seq)
        wrong = {c: np.zeros(len(ALPHAS) - _CLS_FROM) for c in classes}
        for class_id in classes:
            _count_class(seq, class_id, assignment, totals[class_id], wrong)
        for class_id in classes:
            totals[class_id].cls_fp += wrong[class_id]
    per_class = {c: totals[c].figures() for c in classes}
    scored = [c for c in classes if not totals[c].empty()]
    average = {f: np.mean([np.mean(per_class[c][f]) for c in scored]) if scored else 0.0 for f in FIELDS}
    return {
        **{f: float(100 * average[f]) for f in FIELDS},
        "per_class": {classes[c]: {f: float(100 * np.mean(per_class[c][f])) for f in FIELDS} for c in classes},
    }

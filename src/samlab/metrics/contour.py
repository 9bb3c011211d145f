"""The torchmetrics metric of DirectSAM's contour scores (:mod:`samlab.metrics.contour_scores`, numpy only, holds the
definitions; its names are re-exported here)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from samlab.metrics.contour_scores import (
    DEFAULT_THRESHOLDS,
    DEFAULT_TOLERANCE,
    SCORE_FIELDS,
    ContourScores,
    contour_scores,
    score_rows,
    threshold_scores,
    token_outlines,
    tokens,
    tolerance_kernel,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DEFAULT_TOLERANCE",
    "ContourRecall",
    "ContourScores",
    "contour_scores",
    "threshold_scores",
    "token_outlines",
    "tokens",
    "tolerance_kernel",
]


class ContourRecall(Metric):
    """Mean effective contour recall, token count and boundary precision/recall/F over images, per threshold.

    ``update(probabilities, targets)``: ``[B, H, W]`` float probabilities in [0, 1] and ``[B, H, W]`` bool (or 0/1)
    ground-truth boundaries; images with an empty ground truth are skipped. ``compute()`` returns a dict of scalar
    tensors ``contour_recall@t``, ``num_tokens@t``, ``precision@t``, ``boundary_recall@t``, ``f@t`` for each
    threshold ``t`` (formatted with ``:g``), plus ``num_images``; means are NaN when no image was scored.
    """

    full_state_update = False
    FIELDS: tuple[str, ...] = SCORE_FIELDS

    def __init__(
        self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, tolerance: int = DEFAULT_TOLERANCE, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.tolerance = tolerance
        zeros = torch.zeros(len(self.FIELDS), len(self.thresholds), dtype=torch.float64)
        self.add_state("sums", default=zeros, dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probabilities: torch.Tensor, targets: torch.Tensor) -> None:
        probabilities = probabilities.detach().float().cpu().numpy()
        targets = targets.detach().cpu().numpy().astype(bool)
        if probabilities.shape != targets.shape or probabilities.ndim != 3:
            raise ValueError(f"ContourRecall expects [B, H, W] inputs, got {probabilities.shape}, {targets.shape}")
        for prob, gt in zip(probabilities, targets):
            scores = threshold_scores(gt, prob, self.thresholds, self.tolerance)
            if scores is None:
                continue
            self.sums += torch.from_numpy(score_rows(scores)).to(self.sums.device)
            self.count += 1

    def compute(self) -> dict[str, torch.Tensor]:
        means = self.sums / self.count if self.count > 0 else torch.full_like(self.sums, float("nan"))
        result = {
            f"{field}@{t:g}": means[i, j].float()
            for i, field in enumerate(self.FIELDS)
            for j, t in enumerate(self.thresholds)
        }
        result["num_images"] = self.count.float()
        return result

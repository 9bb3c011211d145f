"""MASA's association losses between key and reference RoI embeddings.

``targets[i, j] = 1`` when key RoI ``i`` and reference RoI ``j`` belong to the same instance, 0 otherwise.
"""

from __future__ import annotations

import torch


def multi_positive_contrastive_loss(similarity: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MASA's unbiased multi-positive cross-entropy (``UnbiasedContrastLoss``), averaged over the rows with a positive.

    ``similarity``: ``[K, R]`` float key-to-reference scores (dot products of embeddings); ``targets``: ``[K, R]``
    0/1. For a row with positives ``P`` and negatives ``N`` the loss is
    ``-mean_{p in P} [s_p - log(sum_{q in P} exp(s_q) / |P| + sum_{n in N} exp(s_n))]``: the positives' mass is
    averaged, so a row is not easier for having many positives. Rows without a positive are left out; 0 when no
    row has one.
    """
    targets = targets.to(similarity.dtype)
    valid = targets.sum(dim=1) > 0
    if not valid.any():
        return similarity.sum() * 0.0
    logits = similarity[valid]
    labels = targets[valid]
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    exp = logits.exp()
    positives = labels / labels.sum(dim=1, keepdim=True)
    denominator = (exp * positives + exp * (1 - labels)).sum(dim=1, keepdim=True)
    log_prob = logits - denominator.log()
    return (-(labels * log_prob).sum(dim=1) / labels.sum(dim=1)).mean()


def margin_l2_loss(
    cosine: torch.Tensor,
    targets: torch.Tensor,
    neg_pos_ub: int = 3,
    pos_margin: float = 0.0,
    neg_margin: float = 0.1,
    hard_mining: bool = True,
) -> torch.Tensor:
    """QDTrack/MASA's auxiliary L2 loss on cosine similarities with hard negative mining (``MarginL2Loss``).

    ``cosine``: ``[K, R]`` key-to-reference cosine similarities; ``targets``: ``[K, R]`` 0/1. A positive pair's
    cosine (minus ``pos_margin``) is pulled to 1, a negative's (minus ``neg_margin``) to 0, each clamped to
    ``[0, 1]`` first (a negative below ``neg_margin`` costs nothing). When negatives outnumber ``neg_pos_ub`` times
    the positives, only that many are kept: the costliest (``hard_mining``) or a random choice. Returns the mean
    squared error over the kept pairs (0 when none).
    """
    targets = targets.to(torch.long)
    positive = targets == 1
    negative = targets == 0
    shifted = cosine - pos_margin * positive - neg_margin * negative
    pred = shifted.clamp(0.0, 1.0)
    cost = (pred - targets.to(pred.dtype)) ** 2
    keep = positive | negative
    num_pos = int(positive.sum())
    num_neg = int(negative.sum())
    if neg_pos_ub > 0 and num_neg > neg_pos_ub * num_pos:
        limit = num_pos * neg_pos_ub
        neg_cost = cost.detach()[negative]
        order = neg_cost.topk(limit).indices if hard_mining else torch.randperm(num_neg, device=cost.device)[:limit]
        chosen = torch.zeros(num_neg, dtype=torch.bool, device=cost.device)
        chosen[order] = True
        keep = positive.clone()
        keep[negative] = chosen
    if not keep.any():
        return cosine.sum() * 0.0
    return cost[keep].mean()

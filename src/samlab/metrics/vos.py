"""``JandF``: J, F and J&F of video object segmentation as a torchmetrics Metric (``val/J&F``, ``test/J&F``).

The scores are :mod:`samlab.metrics.vos_scores`' (the official SA-V / DAVIS 2017 rules), the same numbers as
``samlab eval vos`` on the written masks.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from samlab.metrics.vos_scores import video_scores


class JandF(Metric):
    """J, F and J&F of video object segmentation, in percent, averaged over objects (the SA-V/DAVIS protocol).

    ``update(pred, gt, video_name)`` takes one video's ``[T, O, H, W]`` bool masks (any device); the scores are
    computed on CPU with :func:`video_scores`. Only per-object sums are kept, so the metric syncs under DDP.
    ``compute()`` returns ``{"J", "F", "J&F"}`` as float64 scalar tensors (NaN before any object was scored).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    j_sum: Tensor
    f_sum: Tensor
    num_objects: Tensor

    def __init__(self, skip_first_last: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.skip_first_last = skip_first_last
        self.add_state("j_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("f_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_objects", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: Tensor, gt: Tensor, video_name: str | None = None) -> None:
        """Score one video: ``pred`` and ``gt`` are ``[T, O, H, W]`` bool (or 0/1) tensors of the same shape."""
        if pred.shape != gt.shape or gt.ndim != 4:
            where = f"video {video_name!r}: " if video_name is not None else ""
            raise ValueError(
                f"{where}expected prediction and ground truth of the same [T, O, H, W] shape, got "
                f"{tuple(pred.shape)} and {tuple(gt.shape)}"
            )
        scores = video_scores(
            pred.detach().bool().cpu().numpy(), gt.detach().bool().cpu().numpy(), self.skip_first_last
        )
        for j, f in scores.values():
            self.j_sum += j
            self.f_sum += f
        self.num_objects += len(scores)

    def compute(self) -> dict[str, Tensor]:
        """``{"J": .., "F": .., "J&F": ..}`` in percent, means over all scored objects."""
        count = self.num_objects.to(torch.float64)
        j = 100 * self.j_sum / count
        f = 100 * self.f_sum / count
        return {"J": j, "F": f, "J&F": (j + f) / 2}

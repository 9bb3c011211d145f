"""MASA's training data: pairs of independently augmented views of one image, with instance ids.

The pipeline has the shape of the clip pipeline: :mod:`~samlab.data.pairs.augment` (the random view transform),
:mod:`~samlab.data.pairs.dataset` (reading an image and making its two views), :mod:`~samlab.data.pairs.batch` (the
sample and batch layout, collate) and :mod:`~samlab.data.pairs.datamodule` (the LightningDataModule). The sources
are COCO instance files (e.g. ``samlab data sa1b-to-coco`` output) or SA-1B folders.
"""

from samlab.data.pairs.augment import PairAugment, ViewParams, fit_params, render_view, warp_view
from samlab.data.pairs.batch import PairBatch, PairSample, View, collate_pairs
from samlab.data.pairs.datamodule import MASAPairDataModule
from samlab.data.pairs.dataset import PairDataset

__all__ = [
    "MASAPairDataModule",
    "PairAugment",
    "PairBatch",
    "PairDataset",
    "PairSample",
    "View",
    "ViewParams",
    "collate_pairs",
    "fit_params",
    "render_view",
    "warp_view",
]

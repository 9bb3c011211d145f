"""The boundary pipeline of DirectSAM: targets -> augmentation -> datasets -> batch -> data module.

``targets`` draws DirectSAM's boundary maps (numpy + OpenCV), ``augment`` its image preprocessing and
augmentation, ``dataset`` the readers' and pseudo-label datasets, ``batch`` the sample/batch layout and
``datamodule`` the LightningDataModule of the three stages.
"""

from samlab.data.boundaries.augment import AugmentParams, BoundaryAugment, resize_image
from samlab.data.boundaries.batch import BoundaryBatch, BoundarySample, collate_boundaries
from samlab.data.boundaries.datamodule import BoundaryDataModule
from samlab.data.boundaries.dataset import (
    PSEUDO_LABEL_CHOICES,
    BoundaryDataset,
    ConcatBoundaryDataset,
    LabelMapBoundaryDataset,
    PseudoLabelDataset,
    ReaderBoundaryDataset,
    pseudo_label_record,
    read_pseudo_label,
    split_pseudo_labels,
)
from samlab.data.boundaries.targets import (
    boundary_kernel,
    boundary_target,
    label_map_boundary,
    label_map_masks,
    label_map_target,
    resize_masks,
)

__all__ = [
    "PSEUDO_LABEL_CHOICES",
    "AugmentParams",
    "BoundaryAugment",
    "BoundaryBatch",
    "BoundaryDataModule",
    "BoundaryDataset",
    "BoundarySample",
    "ConcatBoundaryDataset",
    "LabelMapBoundaryDataset",
    "PseudoLabelDataset",
    "ReaderBoundaryDataset",
    "boundary_kernel",
    "boundary_target",
    "collate_boundaries",
    "label_map_boundary",
    "label_map_masks",
    "label_map_target",
    "pseudo_label_record",
    "read_pseudo_label",
    "resize_image",
    "resize_masks",
    "split_pseudo_labels",
]

"""NormalizeOnDevice: one device-side normalisation for the clip, pair and boundary data modules."""

from dataclasses import dataclass

import torch

from samlab.data.device import NormalizeOnDevice
from samlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class _TwoViews:
    key: torch.Tensor
    ref: torch.Tensor


class _Module(NormalizeOnDevice):
    batch_type = _TwoViews
    image_fields = ("key", "ref")


def test_uint8_fields_are_normalised_once_and_other_objects_pass_through():
    key = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    ref = torch.zeros((1, 3, 2, 2), dtype=torch.uint8)
    batch = _Module().on_after_batch_transfer(_TwoViews(key, ref), 0)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(batch.key[0], ((1 - mean) / std).expand(3, 2, 2))
    torch.testing.assert_close(batch.ref[0], (-mean / std).expand(3, 2, 2))
    again = _Module().normalize(batch)  # float fields are left alone
    torch.testing.assert_close(again.key[0], ((1 - mean) / std).expand(3, 2, 2))
    other = {"images": key}
    assert _Module().normalize(other) is other and other["images"].dtype == torch.uint8


def test_the_data_modules_share_it():
    from samlab.data.boundaries import BoundaryDataModule
    from samlab.data.datamodules import ClipDataModule, MixedDataModule
    from samlab.data.pairs import MASAPairDataModule

    for cls in (ClipDataModule, MixedDataModule, MASAPairDataModule, BoundaryDataModule):
        assert issubclass(cls, NormalizeOnDevice)
        assert cls.on_after_batch_transfer is NormalizeOnDevice.on_after_batch_transfer
    assert MASAPairDataModule.image_fields == ("key_images", "ref_images")

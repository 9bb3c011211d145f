import numpy as np
import pytest
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from samlab.data.datamodules import COCODataModule
from samlab.data.instance_transforms import (
    SAM_PAD_FILL,
    LargeScaleJitterTransform,
    ResizeLongestSideTransform,
    resize_longest_side_shape,
)
from samlab.data.sampling import Clip
from samlab.errors import DataError


def _clip(height=30, width=40, boxes=((2, 3, 12, 10), (25, 20, 38, 28))):
    frame = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    masks = np.zeros((1, len(boxes), height, width), dtype=bool)
    for o, (x0, y0, x1, y1) in enumerate(boxes):
        masks[0, o, y0:y1, x0:x1] = True
    return Clip("img", [frame], masks, [11, 12][: len(boxes)], [0], (height, width), [5, 6][: len(boxes)])


@pytest.mark.parametrize("shape", [(30, 40), (41, 17), (64, 64), (7, 1000)])
def test_shape_is_segment_anythings(shape):
    assert resize_longest_side_shape(*shape, 64) == ResizeLongestSide.get_preprocess_shape(*shape, 64)


def test_resize_longest_side_pads_bottom_right():
    out = ResizeLongestSideTransform(64)(_clip(), np.random.default_rng(0))
    frame = out.frames[0]
    assert frame.dtype == torch.uint8 and frame.shape == (3, 64, 64)
    assert resize_longest_side_shape(30, 40, 64) == (48, 64)
    assert frame[:, 48:].flatten(1).unique(dim=1).T.tolist() == [list(SAM_PAD_FILL)]
    assert out.masks.shape == (1, 2, 64, 64) and not out.masks[..., 48:, :].any()
    # the box (2, 3)-(12, 10) scaled by 1.6
    ys, xs = np.nonzero(out.masks[0, 0])
    found = np.array([xs.min(), xs.max() + 1, ys.min(), ys.max() + 1])
    assert np.abs(found - 1.6 * np.array([2, 12, 3, 10])).max() <= 1.0  # nearest neighbours
    assert out.object_ids == [11, 12] and out.labels == [5, 6]


def test_large_scale_jitter_drops_cropped_instances_and_never_leaves_an_empty_target():
    transform = LargeScaleJitterTransform(16, scale_range=(2.0, 3.0), hflip_p=0.5)
    kept = set()
    for seed in range(30):
        out = transform(_clip(), np.random.default_rng(seed))
        assert out.frames[0].shape == (3, 16, 16) and out.masks.shape[2:] == (16, 16)
        assert out.num_objects >= 1 and out.masks.any(axis=(0, 2, 3)).all()
        assert len(out.labels) == len(out.object_ids) == out.masks.shape[1]
        assert out.labels == [{11: 5, 12: 6}[i] for i in out.object_ids]
        kept.add(tuple(out.object_ids))
    assert {(11,), (12,)} <= kept  # crops lose one object or the other


def test_large_scale_jitter_raises_naming_the_image_after_max_tries():
    tiny = _clip(200, 200, boxes=((0, 0, 1, 1),))
    transform = LargeScaleJitterTransform(16, scale_range=(4.0, 4.0), max_tries=3)
    with pytest.raises(DataError, match="img: every random crop of 3 tries removed all 1 instances"):
        transform(tiny, np.random.default_rng(0))


def test_skip_bad_samples_skips_and_counts(coco_root):
    ann = str(coco_root / "annotations" / "instances.json")
    dm = COCODataModule(
        ann_file=ann,
        image_root=str(coco_root / "images"),
        image_size=16,
        batch_size=4,
        skip_bad_samples=True,
        # one crop keeps a 16 px window of a 20x-upscaled image: most images lose every instance
        train_transform=LargeScaleJitterTransform(16, scale_range=(20.0, 20.0), max_tries=1),
    )
    dm.setup("fit")
    batch = next(iter(dm.loader("train")))
    assert batch.num_skipped > 0
    assert batch.masks.flatten(2).any(dim=2).all()

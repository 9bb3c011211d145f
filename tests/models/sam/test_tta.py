import pytest
import torch

from samlab.models.sam.prompts import Prompts
from samlab.models.sam.tta import TTAView, tta_views, unview_logits, view_image, view_prompts


def test_views():
    assert tta_views([1.0, 0.5], hflip=True) == [
        TTAView(1.0, False),
        TTAView(1.0, True),
        TTAView(0.5, False),
        TTAView(0.5, True),
    ]
    with pytest.raises(ValueError, match="scales"):
        tta_views([1.5])


@pytest.mark.parametrize("view", [TTAView(1.0, True), TTAView(0.5, False), TTAView(0.5, True)])
def test_prompts_follow_the_image_and_logits_come_back(view):
    valid = (48, 64)
    image = torch.zeros(3, 64, 64)
    image[:, 20:24, 8:12] = 1.0  # a blob centred at x 9.5, y 21.5
    point = Prompts(
        torch.tensor([[[9.5, 21.5]]]),
        torch.tensor([[1]], dtype=torch.int32),
        torch.tensor([[8.0, 20.0, 11.0, 23.0]]),
        torch.tensor([True]),
    )
    seen = view_image(image, valid, view)[0]
    ys, xs = torch.nonzero(seen > 0.2, as_tuple=True)
    moved = view_prompts(point, valid, view)
    assert moved.points[0, 0, 0] == pytest.approx(xs.float().mean().item(), abs=0.6)
    assert moved.points[0, 0, 1] == pytest.approx(ys.float().mean().item(), abs=0.6)
    assert moved.boxes[0, 0] < moved.boxes[0, 2]  # corners stay ordered under the flip
    # a logit map drawn in the view comes back onto the blob of the original
    low_res = torch.nn.functional.interpolate(seen[None, None], size=(16, 16), mode="area") * 40 - 5
    back = unview_logits(low_res, 64, valid, view)[0, 0]
    assert back.shape == valid
    ys, xs = torch.nonzero(back > 0, as_tuple=True)
    assert abs(xs.float().mean().item() - 9.5) < 2 and abs(ys.float().mean().item() - 21.5) < 2

import pytest
import torch

from samlab.models.sam.prompts import (
    PromptConfig,
    Prompts,
    correction_click,
    evaluation_prompts,
    mask_boxes,
    sample_prompts,
)


def _masks():
    masks = torch.zeros(3, 40, 50, dtype=torch.bool)
    masks[0, 5:15, 10:30] = True  # box x 10..29, y 5..14
    masks[1, 20:40, 0:50] = True
    masks[2, 0:3, 47:50] = True
    return masks


def test_box_prompts_jitter_within_ten_percent_capped():
    masks = _masks()
    prompts = sample_prompts(masks, PromptConfig(mode="box"), torch.Generator().manual_seed(0))
    assert prompts.has_box.all() and prompts.points.shape[1] == 0
    tight = sample_prompts(masks, PromptConfig(mode="box", box_noise=0.0)).boxes
    assert tight[0].tolist() == [10, 5, 29, 14]
    sides = torch.stack([tight[:, 2] - tight[:, 0], tight[:, 3] - tight[:, 1]], 1).repeat(1, 2)
    bound = torch.clamp(0.1 * sides, max=20.0)
    assert ((prompts.boxes - tight).abs() <= bound + 1e-5).all()
    assert (prompts.boxes != tight).any()
    big = torch.zeros(1, 600, 600, dtype=torch.bool)
    big[0, 50:550, 50:550] = True
    jittered = sample_prompts(big, PromptConfig(mode="box"), torch.Generator().manual_seed(1)).boxes
    assert (
        (jittered - sample_prompts(big, PromptConfig(box_noise=0.0)).boxes).abs() <= 20.0
    ).all()  # 10 % of 500 is capped at 20


def test_point_prompts_count_and_place_clicks():
    masks = _masks()
    config = PromptConfig(mode="point", max_points=3, max_negative_points=2)
    counts = set()
    for seed in range(20):
        prompts = sample_prompts(masks, config, torch.Generator().manual_seed(seed))
        assert not prompts.has_box.any()
        for row in prompts.to_dicts():
            labels = row["point_labels"]
            positives, negatives = int((labels == 1).sum()), int((labels == 0).sum())
            counts.add((positives, negatives))
            assert 1 <= positives <= 3 and 0 <= negatives <= 2
        for o in range(3):
            for (x, y), label in zip(prompts.points[o].long().tolist(), prompts.point_labels[o].tolist()):
                if label >= 0:
                    assert bool(masks[o, y, x]) == bool(label)
    assert {c[0] for c in counts} == {1, 2, 3} and {c[1] for c in counts} == {0, 1, 2}


def test_mix_draws_boxes_with_box_prob_and_groups_split_decoder_calls():
    masks = _masks().repeat(100, 1, 1)
    prompts = sample_prompts(masks, PromptConfig(mode="mix", box_prob=0.3), torch.Generator().manual_seed(0))
    assert 0.2 < prompts.has_box.float().mean() < 0.4
    groups = list(prompts.groups())
    assert [multimask for _, multimask in groups] == [False, True]  # boxes, then single clicks (max_points=1)
    assert sum(len(i) for i, _ in groups) == len(masks)
    assert prompts.single_click()[groups[1][0]].all()


def test_oracle_point_is_the_mask_centre_and_correction_click_hits_the_error():
    masks = _masks()
    prompts = evaluation_prompts("mask_center", None, masks[:1])
    assert prompts.point_labels.tolist() == [[1]]
    x, y = prompts.points[0, 0].tolist()
    assert 14 <= x <= 25 and 8 <= y <= 11
    pred = torch.zeros_like(masks)
    pred[1] = masks[1]
    pred[1, 0:5, 0:5] = True  # spill only: the click must be negative, in the spill
    coords, labels = correction_click(masks, pred, torch.Generator().manual_seed(0))
    assert labels[:, 0].tolist() == [1, 0, 1]
    x, y = coords[1, 0].long().tolist()
    assert x < 5 and y < 5
    more = prompts.add_points(coords[:1], labels[:1])
    assert more.points.shape == (1, 2, 2) and not more.single_click().any()


def test_prompts_select_drops_padding_columns_and_config_checks():
    prompts = Prompts(
        torch.zeros(2, 3, 2),
        torch.tensor([[1, -1, -1], [1, 0, -1]], dtype=torch.int32),
        torch.zeros(2, 4),
        torch.zeros(2, dtype=torch.bool),
    )
    assert prompts.select(slice(0, 1)).points.shape == (1, 1, 2)
    assert prompts.select(torch.tensor([1])).points.shape == (1, 2, 2)
    with pytest.raises(ValueError, match="mode"):
        PromptConfig(mode="scribble")
    with pytest.raises(ValueError, match="max_points"):
        PromptConfig(max_points=0)
    assert PromptConfig(mode="mix").evaluation_mode == "box"
    assert PromptConfig(mode="point").evaluation_mode == "mask_center"
    assert PromptConfig(mode="box_center").evaluation_mode == "box_center"
    with pytest.raises(ValueError, match="eval_mode"):
        PromptConfig(eval_mode="point")
    with pytest.raises(ValueError, match="multimask"):
        PromptConfig(multimask="sometimes")


def test_mask_boxes_are_cocos_and_box_center_clicks_their_centre():
    masks = _masks()
    boxes = mask_boxes(masks)
    assert boxes.tolist() == [[10, 5, 30, 15], [0, 20, 50, 40], [47, 0, 50, 3]]  # pycocotools' toBbox, as xyxy
    assert mask_boxes(torch.zeros(1, 4, 4, dtype=torch.bool)).tolist() == [[0, 0, 0, 0]]
    train = sample_prompts(masks, PromptConfig(mode="box_center"), torch.Generator().manual_seed(0))
    assert train.points.tolist() == [[[20.0, 10.0]], [[25.0, 30.0]], [[48.5, 1.5]]]
    assert train.point_labels.tolist() == [[1], [1], [1]] and not train.has_box.any()
    coco = torch.tensor([[10.0, 5.0, 30.5, 15.0]])  # a COCO box (continuous), scaled to the input
    assert evaluation_prompts("box", coco, None).boxes.tolist() == coco.tolist()
    assert evaluation_prompts("box_center", coco, None).points.tolist() == [[[20.25, 10.0]]]
    with pytest.raises(ValueError, match="ground-truth masks"):
        evaluation_prompts("mask_center", coco, None)


def test_multimask_policy_decides_the_groups():
    prompts = sample_prompts(_masks(), PromptConfig(mode="mix", box_prob=0.5), torch.Generator().manual_seed(0))
    assert prompts.has_box.any() and prompts.single_click().any()
    assert [m for _, m in prompts.groups()] == [False, True]
    assert [m for _, m in prompts.groups("never")] == [False, False]
    assert [m for _, m in prompts.groups("always")] == [True, True]

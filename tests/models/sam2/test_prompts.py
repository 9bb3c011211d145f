"""SAM 2 prompt simulation: boxes, error clicks and prompt plans, against SAM 2's own samplers where they agree."""

from __future__ import annotations

import types
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
import torch

from samlab.models.sam2.prompts import (
    PromptConfig,
    PromptPlan,
    center_error_click,
    noisy_box_prompt,
    plan_prompts,
    random_error_click,
    sample_error_click,
)

sam2_utils = pytest.importorskip("sam2.modeling.sam2_utils")


def rect_masks(size: int, rects: list[tuple[int, int, int, int] | None]) -> torch.Tensor:
    """``[N, size, size]`` bool masks, one filled rectangle ``(x0, y0, x1, y1)`` (inclusive) or empty per row."""
    masks = torch.zeros(len(rects), size, size, dtype=torch.bool)
    for i, rect in enumerate(rects):
        if rect is not None:
            x0, y0, x1, y1 = rect
            masks[i, y0 : y1 + 1, x0 : x1 + 1] = True
    return masks


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------- boxes


def test_box_without_noise_is_tight_and_empty_mask_gives_no_prompt():
    masks = rect_masks(32, [(3, 5, 10, 20), None, (0, 0, 31, 31)])
    masks[0, 25, 7] = True  # a stray pixel extends the box downwards
    coords, labels, valid = noisy_box_prompt(masks, noise=0.0)
    assert coords.shape == (3, 2, 2) and coords.dtype == torch.float32 and labels.dtype == torch.int32
    torch.testing.assert_close(coords[0], torch.tensor([[3.0, 5.0], [10.0, 25.0]]))
    torch.testing.assert_close(coords[2], torch.tensor([[0.0, 0.0], [31.0, 31.0]]))
    assert labels.tolist() == [[2, 3], [-1, -1], [2, 3]]
    assert valid.tolist() == [True, False, True]
    assert coords[1].abs().sum() == 0
    # With noise the empty row stays padding.
    coords, labels, valid = noisy_box_prompt(masks, generator=seeded(0))
    assert labels[1].tolist() == [-1, -1] and coords[1].abs().sum() == 0 and not valid[1]


@pytest.mark.parametrize("noise_bound", [20, 2])
def test_box_equals_official_sampler_for_the_same_generator_state(noise_bound):
    masks = rect_masks(64, [(10, 12, 50, 40), (0, 30, 20, 63), None, (60, 2, 62, 5)])
    torch.manual_seed(7)
    expected_coords, expected_labels = sam2_utils.sample_box_points(masks[:, None], noise_bound=noise_bound)
    coords, labels, valid = noisy_box_prompt(masks, noise_bound=noise_bound, generator=seeded(7))
    keep = valid.nonzero().flatten()
    assert keep.tolist() == [0, 1, 3]
    torch.testing.assert_close(coords[keep], expected_coords[keep])
    assert torch.equal(labels[keep], expected_labels[keep])
    # Upstream turns the empty mask into a box with corners at the image limits; we give no prompt.
    assert labels[2].tolist() == [-1, -1] and expected_labels[2].tolist() == [2, 3]


def test_box_noise_is_uniform_within_its_bounds_and_clamped_to_the_image():
    n = 4000
    # Box 40 x 20 px away from the border: offsets uniform in [-4, 4] (x) and [-2, 2] (y).
    masks = rect_masks(128, [(30, 50, 70, 70)]).expand(n, -1, -1)
    coords, _, _ = noisy_box_prompt(masks, generator=seeded(1))
    offsets = coords.view(n, 4) - torch.tensor([30.0, 50.0, 70.0, 70.0])
    bounds = torch.tensor([4.0, 2.0, 4.0, 2.0])
    assert (offsets.abs() <= bounds).all()
    assert (offsets.abs().amax(0) > 0.95 * bounds).all()
    torch.testing.assert_close(offsets.mean(0), torch.zeros(4), atol=0.1, rtol=0)
    torch.testing.assert_close(offsets.var(0), bounds**2 / 3, rtol=0.08, atol=0)  # variance of U[-d, d]
    # A large box: the pixel bound (here 3 px) caps the offset; a box on the border stays inside the image.
    coords, _, _ = noisy_box_prompt(rect_masks(128, [(0, 0, 127, 100)]).expand(n, -1, -1), 0.1, 3, seeded(2))
    assert coords.min() >= 0 and coords.max() <= 127
    assert (coords[:, 1] - torch.tensor([127.0, 100.0])).abs().max() <= 3
    assert (coords[:, 0] == 0).float().mean() == pytest.approx(0.5, abs=0.05)  # half the draws hit the clamp


# ---------------------------------------------------------------------------------------------------- clicks


def error_cases() -> tuple[torch.Tensor, torch.Tensor]:
    """GT and predictions with missed parts, spills, both, and a prediction of nothing."""
    gt = rect_masks(24, [(4, 4, 15, 15), (2, 2, 10, 10), (5, 5, 20, 12), (0, 0, 5, 5)])
    pred = rect_masks(24, [(4, 4, 9, 15), (2, 2, 14, 14), (8, 3, 23, 12), None])
    return gt, pred


def test_random_click_equals_official_sampler_for_the_same_generator_state():
    gt, pred = error_cases()
    for seed, p in [(0, pred), (1, pred), (2, None)]:
        torch.manual_seed(seed)
        expected = sam2_utils.sample_random_points_from_errors(gt[:, None], None if p is None else p[:, None])
        got = random_error_click(gt, p, generator=seeded(seed))
        torch.testing.assert_close(got[0], expected[0])
        assert torch.equal(got[1], expected[1])
        assert got[0].shape == (4, 1, 2) and got[1].dtype == torch.int32


def test_random_click_is_uniform_over_the_error_region_with_the_right_label():
    gt = torch.zeros(1, 6, 6, dtype=torch.bool)
    pred = torch.zeros(1, 6, 6, dtype=torch.bool)
    gt[0, 1, 1:4] = True  # three missed pixels (x = 1, 2, 3; y = 1) -> positive clicks
    pred[0, 4, 4] = True  # one spilled pixel (x = 4, y = 4) -> negative click
    n = 4000
    coords, labels = random_error_click(gt.expand(n, -1, -1), pred.expand(n, -1, -1), generator=seeded(3))
    counts = Counter((int(x), int(y), int(label)) for (x, y), label in zip(coords[:, 0].tolist(), labels[:, 0]))
    assert set(counts) == {(1, 1, 1), (2, 1, 1), (3, 1, 1), (4, 4, 0)}
    for count in counts.values():
        assert count / n == pytest.approx(0.25, abs=0.03)


def test_random_click_without_error():
    gt = rect_masks(8, [(2, 2, 5, 5), None, (0, 0, 7, 7), (1, 1, 3, 3)])
    pred = gt.clone()
    coords, labels = random_error_click(gt, pred, generator=seeded(4))
    xy = coords[:, 0].long()
    # Perfect prediction with background: a negative click on the background (as upstream).
    assert labels[0, 0] == 0 and not gt[0, xy[0, 1], xy[0, 0]]
    assert labels[1, 0] == 0
    # The object fills the image: a positive click on it (upstream would give a negative click at (0, 0)).
    assert labels[2, 0] == 1
    # First click (no prediction): positive, inside the object; an empty GT gives a background click.
    coords, labels = random_error_click(gt, None, generator=seeded(5))
    xy = coords[:, 0].long()
    assert labels[:, 0].tolist() == [1, 0, 1, 1]
    assert gt[3, xy[3, 1], xy[3, 0]] and gt[0, xy[0, 1], xy[0, 0]]


def test_center_click_equals_official_sampler_and_finds_the_centre():
    gt, pred = error_cases()
    for p in (pred, None):
        expected = sam2_utils.sample_one_point_from_error_center(gt[:, None], None if p is None else p[:, None])
        got = center_error_click(gt, p)
        torch.testing.assert_close(got[0], expected[0])
        assert torch.equal(got[1], expected[1])
    # A missed 5 x 5 square at x 10..14, y 3..7 next to a 1-pixel spill: positive click in the middle.
    gt = rect_masks(20, [(10, 3, 14, 7)])
    pred = rect_masks(20, [(0, 0, 0, 0)])
    coords, labels = center_error_click(gt, pred)
    assert coords.tolist() == [[[12.0, 5.0]]] and labels.tolist() == [[1]]


def test_center_click_without_error_clicks_the_background_centre():
    gt = rect_masks(9, [(0, 0, 8, 4), (0, 0, 8, 8)])  # object on the top half; object filling the image
    coords, labels = center_error_click(gt, gt.clone())
    assert labels.tolist() == [[0], [1]]
    # Background rows 5..8: rows 6 and 7 are deepest (the image border counts as a border), the first one wins.
    assert coords[0, 0, 1] == 6
    assert coords[1].tolist() == [[4.0, 4.0]]


def test_sample_error_click_dispatches_and_checks_inputs():
    gt, pred = error_cases()
    uniform = sample_error_click(gt, pred, "uniform", seeded(0))
    expected = random_error_click(gt, pred, seeded(0))
    assert torch.equal(uniform[0], expected[0]) and torch.equal(uniform[1], expected[1])
    assert torch.equal(sample_error_click(gt, pred, "center")[0], center_error_click(gt, pred)[0])
    with pytest.raises(ValueError, match="'middle'"):
        sample_error_click(gt, pred, "middle")
    with pytest.raises(ValueError, match="bool tensor"):
        random_error_click(gt.float(), pred)
    with pytest.raises(ValueError, match="differ in shape"):
        center_error_click(gt, pred[:2])


# ---------------------------------------------------------------------------------------------------- plans


def plan_signature(use_mask: bool, init: list[int], boxes: list[int], corrected: list[int]) -> tuple:
    return (use_mask, tuple(init), tuple(sorted(boxes)), tuple(corrected))


def exact_mose_distribution(num_frames: int = 4) -> dict[tuple, Fraction]:
    """Plan probabilities of the MOSE recipe (SAM2Train.prepare_prompt_inputs) worked out by hand, 4 frames."""
    half, others = Fraction(1, 2), range(1, num_frames)
    pick = Fraction(1, num_frames - 1)
    dist = {plan_signature(True, [0], [], []): half * half}
    for k in others:
        dist[plan_signature(True, [0, k], [], [])] = half * half * pick
    for boxes in ([], [0]):  # one init frame: box or click, then 1 or 2 corrected frames
        dist[plan_signature(False, [0], boxes, [0])] = half * half * half * half
        for k in others:
            dist[plan_signature(False, [0], boxes, [0, k])] = half * half * half * half * pick
    for k in others:  # two init frames, each with its own box/click draw, both corrected
        for boxes in ([], [0], [k], [0, k]):
            dist[plan_signature(False, [0, k], boxes, [0, k])] = half * half * pick * Fraction(1, 4)
    assert sum(dist.values()) == 1
    return dist


def total_variation(counts: Counter, n: int, exact: dict[tuple, Fraction]) -> float:
    keys = set(counts) | set(exact)
    return 0.5 * sum(abs(counts[k] / n - float(exact.get(k, 0))) for k in keys)


def official_plans(n: int, config: PromptConfig, num_frames: int, monkeypatch, seed: int = 0) -> list[tuple]:
    """Plans drawn by the official ``SAM2Train.prepare_prompt_inputs`` (its samplers stubbed out for speed)."""
    sam2_train = pytest.importorskip("training.model.sam2")
    box = (torch.zeros(1, 2, 2), torch.tensor([[2, 3]], dtype=torch.int32))
    click = (torch.zeros(1, 1, 2), torch.tensor([[1]], dtype=torch.int32))
    monkeypatch.setattr(sam2_train, "sample_box_points", lambda masks: box)
    monkeypatch.setattr(sam2_train, "get_next_point", lambda **kwargs: click)
    model = types.SimpleNamespace(training=True, rng=np.random.default_rng(seed), **vars(config))
    batch = types.SimpleNamespace(masks=torch.ones(num_frames, 1, 2, 2, dtype=torch.bool), num_frames=num_frames)
    plans = []
    for _ in range(n):
        out = sam2_train.SAM2Train.prepare_prompt_inputs(model, {}, batch)
        points = out["point_inputs_per_frame"]
        boxes = [t for t in out["init_cond_frames"] if t in points and points[t]["point_labels"][0, 0] == 2]
        plans.append(
            plan_signature(
                not out["use_pt_input"], out["init_cond_frames"], boxes, list(out["frames_to_add_correction_pt"])
            )
        )
    return plans


def test_plans_are_the_official_plans_draw_by_draw(monkeypatch):
    """The same NumPy generator state gives upstream's plans, one by one, and the MOSE recipe's distribution."""
    n, config = 3000, PromptConfig()
    rng = np.random.default_rng(0)
    ours = []
    for _ in range(n):
        plan = plan_prompts(4, config, rng)
        ours.append(
            plan_signature(plan.use_mask, plan.init_cond_frames, plan.box_frames, plan.frames_to_add_correction_pt)
        )
    assert ours == official_plans(n, config, 4, monkeypatch)
    counts, exact = Counter(ours), exact_mose_distribution()
    assert set(counts) == set(exact)
    # Sampling noise gives a total variation of about 0.03 here; drawing box/click once per clip instead of once
    # per frame would move 0.125 of the mass.
    assert total_variation(counts, n, exact) < 0.05
    # The headline frequencies: mask 1/2, box 1/4, click 1/4 on frame 0; one or two init frames 1/2 each.
    kinds = Counter()
    for (use_mask, _, boxes, _), count in counts.items():
        kinds["mask" if use_mask else "box" if 0 in boxes else "click"] += count
    assert kinds["mask"] / n == pytest.approx(0.5, abs=0.03)
    assert kinds["box"] / n == pytest.approx(0.25, abs=0.03)
    assert sum(c for (_, init, _, _), c in counts.items() if len(init) == 2) / n == pytest.approx(0.5, abs=0.03)
    # A longer clip with more frames to correct: still upstream's plans.
    longer = PromptConfig(num_init_cond_frames_for_train=3, num_frames_to_correct_for_train=5)
    rng = np.random.default_rng(5)
    ours = [plan_prompts(8, longer, rng) for _ in range(200)]
    signatures = [
        plan_signature(p.use_mask, p.init_cond_frames, p.box_frames, p.frames_to_add_correction_pt) for p in ours
    ]
    assert signatures == official_plans(200, longer, 8, monkeypatch, seed=5)


def test_plan_of_longer_clip_without_random_counts():
    config = PromptConfig(
        prob_to_use_pt_input_for_train=1.0,
        prob_to_use_box_input_for_train=0.0,
        num_init_cond_frames_for_train=2,
        rand_init_cond_frames_for_train=False,
        num_frames_to_correct_for_train=4,
        rand_frames_to_correct_for_train=False,
        add_all_frames_to_correct_as_cond=False,
        num_correction_pt_per_frame=3,
    )
    plan = plan_prompts(8, config, np.random.default_rng(1))
    assert not plan.use_mask and plan.box_frames == []
    assert len(plan.init_cond_frames) == 2 and plan.init_cond_frames[0] == 0
    corrected = plan.frames_to_add_correction_pt
    assert len(set(corrected)) == 4 and corrected[:2] == plan.init_cond_frames
    assert plan.num_correction_points == 3 and plan.point_sampling == "uniform"
    extra = corrected[2]
    assert plan.prompt_kind(0) == "click" and plan.prompt_kind(extra) is None
    assert plan.is_cond_frame(plan.init_cond_frames[1]) and not plan.is_cond_frame(extra)
    order = plan.processing_order
    assert order[:2] == plan.init_cond_frames and sorted(order) == list(range(8))
    assert order[2:] == sorted(order[2:])


def test_plan_special_cases():
    config = PromptConfig()
    # A single frame (an image) always gets point input, corrected on that frame.
    for seed in range(10):
        plan = plan_prompts(1, config, np.random.default_rng(seed))
        assert not plan.use_mask and plan.init_cond_frames == [0] and plan.frames_to_add_correction_pt == [0]
    # Evaluation with the MOSE recipe: the GT mask on the first frame, nothing else.
    plan = plan_prompts(5, config, np.random.default_rng(0), training=False)
    assert plan.use_mask and plan.init_cond_frames == [0] and plan.frames_to_add_correction_pt == []
    assert plan.prompt_kind(0) == "mask" and plan.point_sampling == "center" and plan.prob_to_sample_from_gt == 0
    # More init frames than the clip has: capped instead of failing.
    many = PromptConfig(num_init_cond_frames_for_train=4, num_frames_to_correct_for_train=5)
    plans = [plan_prompts(2, many, np.random.default_rng(s)) for s in range(20)]
    assert all(set(p.init_cond_frames) <= {0, 1} for p in plans)
    assert any(p.init_cond_frames == [0, 1] for p in plans)
    # Box frames: with both init frames boxed, prompt_kind says so.
    boxed = PromptPlan(4, False, [0, 2], [0, 2], [0, 2], 7, True, "uniform", 0.1)
    assert [boxed.prompt_kind(t) for t in range(4)] == ["box", None, "box", None]
    assert boxed.processing_order == [0, 2, 1, 3]


def test_prompt_config_validates():
    with pytest.raises(ValueError, match="prob_to_use_box_input_for_train"):
        PromptConfig(prob_to_use_box_input_for_train=1.5)
    with pytest.raises(ValueError, match="num_frames_to_correct_for_train"):
        PromptConfig(num_frames_to_correct_for_train=1, num_init_cond_frames_for_train=2)
    with pytest.raises(ValueError, match="pt_sampling_for_eval"):
        PromptConfig(pt_sampling_for_eval="middle")
    with pytest.raises(ValueError, match="num_frames=0"):
        plan_prompts(0, PromptConfig())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_generator_serves_gpu_masks_with_the_cpu_results():
    gt, pred = error_cases()
    box = noisy_box_prompt(gt.cuda(), generator=seeded(0))
    click = random_error_click(gt.cuda(), pred.cuda(), generator=seeded(1))
    centre = center_error_click(gt.cuda(), pred.cuda())
    for got, expected in zip(
        (*box, *click, *centre),
        (
            *noisy_box_prompt(gt, generator=seeded(0)),
            *random_error_click(gt, pred, seeded(1)),
            *center_error_click(gt, pred),
        ),
    ):
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), expected)

"""Side by side: samlab's SAM 2 training step against the official one (``training`` package of ``sam2``).

Both sides get the same model settings and weights, the same cached synthetic batch (3 objects visible on every
frame), the same pinned prompt plan (both plan generators reseeded alike before every step, so the plans are the
same draw for draw) and the same noise seed, the same precision and the same AdamW; data loading is outside the
timed window. After warm-up, the steps are interleaved, the order alternating (samlab, official, official, samlab,
...), so that a shared machine slows both alike and neither always runs first; each step (zero_grad, forward, loss,
backward, optimizer step) is timed with ``synchronize`` on CUDA.

    nice -n 10 python benchmarks/bench_train_vs_official.py --variant sam2.1_hiera_t --size 256 --steps 5
    python benchmarks/bench_train_vs_official.py --device cuda --variant sam2.1_hiera_b+ --size 1024 --precision bf16

Prints one line per plan: s/step (median and min) and frames/s of each side, the ratio samlab / official, and the
peak GPU memory on CUDA; with ``--profile ROWS`` then a ``torch.profiler`` table of one more step per side (top ops
by self CPU time). A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import time
import warnings

import numpy as np
import torch
from training.loss_fns import MultiStepMultiMasksAndIous
from training.utils.data_utils import BatchedVideoDatapoint, BatchedVideoMetaData

from samlab.models.sam2.module import SAM2VideoModule
from samlab.tools.bench_memory import official_model, synthetic_batch
from samlab.tools.bench_train import PINNED_PLANS

MOSE_LOSS = {
    "weight_dict": {"loss_mask": 20, "loss_dice": 1, "loss_iou": 1, "loss_class": 1},
    "supervise_all_iou": True,
    "iou_use_l1_loss": True,
    "pred_obj_scores": True,
    "focal_gamma_obj_score": 0.0,
    "focal_alpha_obj_score": -1.0,
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _profile(title: str, step, rows: int) -> dict[str, tuple[float, int]]:
    """Profile one call of ``step`` on the CPU, print the ``rows`` ops with the most self CPU time and return
    ``{op: (self CPU ms, calls)}`` of every op."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    averages = prof.key_averages()
    print(f"--- profile: {title} ---\n{averages.table(sort_by='self_cpu_time_total', row_limit=rows)}", flush=True)
    return {event.key: (event.self_cpu_time_total / 1000, event.count) for event in averages}


def _print_profile_difference(title: str, ours: dict, theirs: dict, rows: int) -> None:
    """The ``rows`` ops where samlab's profiled step spends the most self CPU time more than the official's."""
    names = set(ours) | set(theirs)
    delta = {n: ours.get(n, (0.0, 0))[0] - theirs.get(n, (0.0, 0))[0] for n in names}
    lines = [f"--- samlab - official, self CPU ms (calls): {title} ---"]
    lines.append(f"total {sum(v[0] for v in ours.values()):.0f} - {sum(v[0] for v in theirs.values()):.0f}")
    for name in sorted(names, key=lambda n: -delta[n])[:rows]:
        (ms, calls), (their_ms, their_calls) = ours.get(name, (0.0, 0)), theirs.get(name, (0.0, 0))
        lines.append(f"{delta[name]:+9.1f}  {name[:60]:60s} {ms:9.1f} ({calls}) vs {their_ms:9.1f} ({their_calls})")
    counts = {n: (ours.get(n, (0.0, 0))[1], theirs.get(n, (0.0, 0))[1]) for n in names}
    differ = sorted((n for n in names if counts[n][0] != counts[n][1]), key=lambda n: -abs(delta[n]))
    lines.append(f"ops called a different number of times ({len(differ)} of {len(names)}): samlab vs official calls")
    lines += [f"{delta[n]:+9.1f}  {n[:60]:60s} {counts[n][0]} vs {counts[n][1]}" for n in differ[:rows]]
    print("\n".join(lines), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="sam2.1_hiera_t")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--plans", nargs="+", default=list(PINNED_PLANS), choices=list(PINNED_PLANS))
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per side")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("32", "bf16"), default="32", help="bf16: bf16 autocast, as bf16-mixed")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="ROWS",
        help="after the timed steps, profile one more step per side (torch.profiler) and print its top ROWS ops",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*self.log.*")
    device = torch.device(args.device)

    batch = synthetic_batch(args.frames, args.objects, args.size, batch_size=args.batch_size).to(device)
    num_frames, num_objects = batch.masks.shape[:2]
    datapoint = BatchedVideoDatapoint(
        img_batch=batch.images,
        obj_to_frame_idx=batch.obj_to_frame_idx,
        masks=batch.masks,
        metadata=BatchedVideoMetaData(
            unique_objects_identifier=torch.zeros(num_frames, num_objects, 3, dtype=torch.long, device=device),
            frame_orig_size=torch.zeros(num_frames, num_objects, 2, dtype=torch.long, device=device),
        ),
        dict_key="bench",
        batch_size=[num_frames],
    )
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if args.precision == "bf16"
        else contextlib.nullcontext
    )
    for plan_name in args.plans:
        prompts = PINNED_PLANS[plan_name]
        torch.manual_seed(0)
        module = SAM2VideoModule(variant=args.variant, image_size=args.size, prompts=prompts).to(device)
        oracle = official_model(module, prompts, freeze_image_encoder=False, seed=0).to(device)
        official_loss = MultiStepMultiMasksAndIous(**MOSE_LOSS)

        def samlab_step(step: int, module: SAM2VideoModule = module) -> None:
            module.plan_rng = np.random.default_rng(step)
            with autocast():
                loss = module.training_step(batch, step)
            loss.backward()

        def official_step(step: int, oracle: torch.nn.Module = oracle, official_loss=official_loss) -> None:
            oracle.rng = np.random.default_rng(step)
            with autocast():
                loss = official_loss(oracle(datapoint), batch.masks)["core_loss"]
            if not math.isfinite(loss.item()):  # as the official trainer, every step
                raise FloatingPointError(f"loss is {loss.item()}")
            loss.backward()

        sides = {}
        for name, model, run in (("samlab", module.model, samlab_step), ("official", oracle, official_step)):
            optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)

            def timed(step: int, run=run, optimizer=optimizer) -> float:
                optimizer.zero_grad(set_to_none=True)
                torch.manual_seed(1000 + step)
                _sync(device)
                start = time.perf_counter()
                run(step)
                optimizer.step()
                _sync(device)
                return time.perf_counter() - start

            sides[name] = {"timed": timed, "times": []}
        for step in range(args.warmup):
            for side in sides.values():
                side["timed"](step)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for step in range(args.warmup, args.warmup + args.steps):
            order = list(sides.values()) if step % 2 == 0 else list(sides.values())[::-1]
            for side in order:  # interleaved, the order alternating (A B, B A, ...): neither side always goes first
                side["times"].append(side["timed"](step))
        frames = num_frames * args.batch_size
        result = {"plan": plan_name, "variant": args.variant, "size": args.size, "frames": num_frames}
        result |= {"objects": num_objects, "precision": args.precision, "device": str(device), "steps": args.steps}
        for name, side in sides.items():
            median = statistics.median(side["times"])
            result[f"{name}_s_per_step_median"] = round(median, 3)
            result[f"{name}_s_per_step_min"] = round(min(side["times"]), 3)
            result[f"{name}_frames_per_s"] = round(frames / median, 3)
        result["ratio_median"] = round(result["samlab_s_per_step_median"] / result["official_s_per_step_median"], 3)
        result["ratio_min"] = round(result["samlab_s_per_step_min"] / result["official_s_per_step_min"], 3)
        if device.type == "cuda":
            result["peak_gpu_memory_gb_both_sides"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
        print(json.dumps(result) if args.json else "  ".join(f"{k}={v}" for k, v in result.items()), flush=True)
        if args.profile:
            profiles = {
                name: _profile(f"{plan_name} {name}", lambda side=side: side["timed"](args.warmup), args.profile)
                for name, side in sides.items()
            }
            _print_profile_difference(plan_name, profiles["samlab"], profiles["official"], args.profile)
        del module, oracle, sides


if __name__ == "__main__":
    main()

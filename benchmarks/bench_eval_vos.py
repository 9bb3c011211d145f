"""Frames per second of ``samlab eval vos`` on one CPU core (720p DAVIS-layout folders, 3 objects per video).

    python benchmarks/bench_eval_vos.py [--videos 4] [--frames 50] [--official-dir DIR] [--zlib] [--end-to-end]

Synthesizes ground truth and imperfect predictions (shifted, resized, partly missing objects) as palette PNGs in a
temporary folder, then times :func:`samlab.tools.eval_vos.evaluate_vos_folders` with OpenCV on one thread.
``--official-dir`` names a folder holding the official SA-V evaluator (``sav_evaluator.py`` and
``utils/sav_benchmark.py`` from facebookresearch/sam2's ``sav_dataset``, with scikit-image importable); it is then
timed on the same folders, one process, and its scores are printed beside ours.

``--end-to-end`` also times whole commands, start-up included, pinned to one core (``taskset -c 0`` where
available) with one thread: ``samlab eval vos --gt GT --pred PRED`` and, with ``--official-dir``, the official
``python sav_evaluator.py --gt_root GT --pred_root PRED --num_processes 1 --do_not_skip_first_and_last_frame``
(run from its own folder, outside the project), best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from samlab.data.formats import base as png_decoding
from samlab.tools.eval_vos import evaluate_vos_folders

HEIGHT, WIDTH = 720, 1280


def _save_palette_png(path: Path, labels: np.ndarray) -> None:
    image = Image.fromarray(labels, mode="P")
    image.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0, 0, 0, 200] + [0, 0, 0] * 252)
    image.save(path)


def synthesize(root: Path, videos: int, frames: int, objects: int, seed: int = 0) -> None:
    """Write ``root/gt/<video>/<frame>.png`` and ``root/pred/...``: moving ellipses and their imperfect copies."""
    rng = np.random.default_rng(seed)
    for v in range(videos):
        gt_dir, pred_dir = root / "gt" / f"video{v:03d}", root / "pred" / f"video{v:03d}"
        gt_dir.mkdir(parents=True)
        pred_dir.mkdir(parents=True)
        centers = rng.uniform((150, 150), (WIDTH - 150, HEIGHT - 150), size=(objects, 2))
        velocity = rng.uniform(-3, 3, size=(objects, 2))
        axes = rng.uniform(40, 140, size=(objects, 2))
        for t in range(frames):
            gt = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
            pred = np.zeros_like(gt)
            for obj in range(objects):
                center = centers[obj] + velocity[obj] * t
                cv2.ellipse(gt, center.astype(int).tolist(), axes[obj].astype(int).tolist(), 0, 0, 360, obj + 1, -1)
                if rng.random() < 0.05:  # the tracker lost the object on this frame
                    continue
                shift = center + rng.integers(-8, 9, size=2)
                scale = axes[obj] * rng.uniform(0.85, 1.15)
                cv2.ellipse(pred, shift.astype(int).tolist(), scale.astype(int).tolist(), 10, 0, 360, obj + 1, -1)
            _save_palette_png(gt_dir / f"{t:05d}.png", gt)
            _save_palette_png(pred_dir / f"{t:05d}.png", pred)


def _official_jf(official_dir: Path, gt: Path, pred: Path) -> float:
    """J&F of the official per-video evaluator run in this process (all frames counted, as ours here)."""
    sys.path.insert(0, str(official_dir))
    from utils.sav_benchmark import VideoEvaluator  # only importable once --official-dir is on the path

    evaluator = VideoEvaluator(str(gt), str(pred), skip_first_and_last=False)
    scores = [evaluator(video.name) for video in sorted(gt.iterdir())]
    j = [v for _, iou, _ in scores for v in iou.values()]
    f = [v for _, _, bf in scores for v in bf.values()]
    return (float(np.mean(j)) + float(np.mean(f))) / 2


def _time_command(command: list[str], cwd: Path | None, repeats: int) -> float:
    """Best wall time in seconds of ``command`` run ``repeats`` times on one core with one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENCV_FOR_THREADS_NUM": "1"}
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def end_to_end(root: Path, official_dir: Path | None, repeats: int) -> None:
    """Print the wall time of ``samlab eval vos`` and of the official evaluator as whole commands."""
    samlab = [sys.executable, "-m", "samlab.cli", "eval", "vos", "--gt", str(root / "gt"), "--pred", str(root / "pred")]
    ours = _time_command(samlab, None, repeats)
    print(f"end to end, 1 core, start-up included: samlab eval vos {ours:6.2f} s wall")
    if official_dir is None:
        return
    official = [
        sys.executable,
        "sav_evaluator.py",
        "--gt_root",
        str(root / "gt"),
        "--pred_root",
        str(root / "pred"),
        "--num_processes",
        "1",
        "--do_not_skip_first_and_last_frame",
    ]
    theirs = _time_command(official, official_dir, repeats)
    print(f"end to end, 1 core, start-up included: official        {theirs:6.2f} s wall ({theirs / ours:.1f}x samlab)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of samlab; the best is reported")
    parser.add_argument("--official-dir", type=Path, default=None)
    parser.add_argument("--zlib", action="store_true", help="inflate PNGs with zlib even when libdeflate is installed")
    parser.add_argument("--end-to-end", action="store_true", help="also time the whole commands, start-up included")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    if args.zlib:
        png_decoding._deflate = None
    print(f"PNG inflate: {'zlib' if png_decoding._deflate is None else 'libdeflate'}")
    total = args.videos * args.frames
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize(root, args.videos, args.frames, args.objects)
        best_wall = best_cpu = float("inf")
        for _ in range(args.repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            result = evaluate_vos_folders(root / "gt", root / "pred")
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
        # CPU time is the better estimate of an idle core when other jobs share the machine.
        print(f"{total} frames of {WIDTH}x{HEIGHT}, {args.objects} objects, 1 core; frames/s by wall and CPU time")
        print(
            f"samlab:   {total / best_wall:7.1f} wall {total / best_cpu:7.1f} CPU   "
            f"J&F {result.jf:.3f}  J {result.j:.3f}  F {result.f:.3f}"
        )
        if args.official_dir is not None:
            wall, cpu = time.perf_counter(), time.process_time()
            official_jf = _official_jf(args.official_dir, root / "gt", root / "pred")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"official: {total / wall:7.1f} wall {total / cpu:7.1f} CPU   J&F {official_jf:.3f}")
        if args.end_to_end:
            end_to_end(root, args.official_dir, args.repeats)


if __name__ == "__main__":
    main()

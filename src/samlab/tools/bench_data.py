"""How fast one DataLoader worker makes training clips: the figure behind ``samlab bench data``.

One worker reads a clip (frame JPEGs and mask PNGs, decoded) and augments it with SAM 2's MOSE recipe
(:class:`~samlab.data.transforms.SAM2TrainTransform`). The figure tells how many workers keep a GPU fed: a GPU step
on ``B`` clips every ``s`` seconds needs ``B / (s * clips_per_s_per_worker)`` workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from samlab.data.formats.base import VideoReader
from samlab.data.formats.davis import DAVISReader
from samlab.data.sampling import ClipSampler, load_clip
from samlab.data.transforms import SAM2TrainTransform

_READERS: dict[str, Callable[[Path], VideoReader]] = {
    "mose": DAVISReader,
    "davis": DAVISReader,
}

WARMUP_CLIPS = 2


def bench_data(
    root: str | os.PathLike[str],
    format: str = "mose",
    num_frames: int = 8,
    size: int = 1024,
    max_num_objects: int = 3,
    clips: int = 30,
    seed: int = 0,
    normalize: bool = False,
    antialias: bool = False,
) -> dict:
    """Read and augment ``clips`` clips of ``root`` in this process on one CPU thread, after 2 warm-up clips.

    Clips of ``num_frames`` frames and up to ``max_num_objects`` objects are sampled from randomly chosen videos with
    :class:`~samlab.data.sampling.ClipSampler` and transformed by ``SAM2TrainTransform(size, normalize=normalize,
    antialias=antialias)`` (``normalize=False``, the data modules' default: frames stay uint8 and are normalised on
    the device after the transfer; True adds the float32 normalisation on the CPU; ``antialias=True``: frames are
    first shrunk as PIL does, see the transform). OpenCV and torch run single-threaded during the measurement (their
    previous thread counts are restored after).

    Returns ``{"clips_per_s_per_worker", "ms_per_clip": {"read", "transform", "total"}, "cpu_ms_per_clip",
    "cpu_transform_ms_per_clip", "clips", "videos", "frame_size", "objects_per_clip", "format", "num_frames", "size",
    "normalize", "antialias"}``: wall-clock rates and milliseconds; ``cpu_ms_per_clip`` is the process CPU time per
    clip (close to the wall time on an idle machine, lower when other processes share the cores),
    ``cpu_transform_ms_per_clip`` its transform part; ``frame_size`` is ``[H, W]`` on disk of the first measured
    clip.
    """
    if format not in _READERS:
        raise ValueError(f"unknown format '{format}'; choose one of {sorted(_READERS)}")
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    reader = _READERS[format](Path(root))
    sampler = ClipSampler(num_frames=num_frames, max_num_objects=max_num_objects)
    transform = SAM2TrainTransform(size, normalize=normalize, antialias=antialias)
    rng = np.random.default_rng(seed)
    cv2_threads, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    read_s, transform_s, cpu_s, cpu_transform_s, objects = 0.0, 0.0, 0.0, 0.0, 0
    frame_size: list[int] = []
    try:
        for i in range(WARMUP_CLIPS + clips):
            video = reader[int(rng.integers(len(reader)))]
            cpu_start = time.process_time()
            start = time.perf_counter()
            clip = load_clip(video, sampler.sample(video, rng))
            read_end, cpu_read_end = time.perf_counter(), time.process_time()
            transform(clip, rng)
            end = time.perf_counter()
            if i < WARMUP_CLIPS:
                continue
            cpu_s += time.process_time() - cpu_start
            cpu_transform_s += time.process_time() - cpu_read_end
            read_s += read_end - start
            transform_s += end - read_end
            objects += clip.num_objects
            frame_size = frame_size or list(clip.orig_size)
    finally:
        cv2.setNumThreads(cv2_threads)
        torch.set_num_threads(torch_threads)
    total_s = read_s + transform_s
    return {
        "clips_per_s_per_worker": clips / total_s,
        "ms_per_clip": {
            "read": 1000 * read_s / clips,
            "transform": 1000 * transform_s / clips,
            "total": 1000 * total_s / clips,
        },
        "cpu_ms_per_clip": 1000 * cpu_s / clips,
        "cpu_transform_ms_per_clip": 1000 * cpu_transform_s / clips,
        "clips": clips,
        "videos": len(reader),
        "frame_size": frame_size,
        "objects_per_clip": objects / clips,
        "format": format,
        "num_frames": num_frames,
        "size": size,
        "normalize": normalize,
        "antialias": antialias,
    }

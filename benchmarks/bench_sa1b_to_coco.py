"""Peak memory and speed of ``samlab data sa1b-to-coco`` as the number of images grows.

    python benchmarks/bench_sa1b_to_coco.py [--images 2000 20000] [--objects 60] [--workers 2]

Writes one synthetic SA-1B annotation (``--objects`` RLE masks on a 1500 x 2250 image, SA-1B's typical size) and
hard-links it under ``--images`` names in SA-1B's folder layout, with a MASA-style image list, then runs the
converter in a fresh process per size and prints the peak resident memory of the converting process and of its
largest worker (``ru_maxrss``), the wall time and the output sizes. The figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from samlab.masks import encode_rle, mask_to_box

HEIGHT, WIDTH = 1500, 2250


def _annotation(objects: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    annotations = []
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    for k in range(objects):
        cy, cx = rng.integers(100, HEIGHT - 100), rng.integers(100, WIDTH - 100)
        ry, rx = rng.integers(20, 300, size=2)
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        rle = encode_rle(mask)
        x1, y1, x2, y2 = (float(v) for v in mask_to_box(mask))
        annotations.append(
            {
                "id": k + 1,
                "segmentation": rle,
                "area": int(mask.sum()),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "predicted_iou": 0.9,
                "stability_score": 0.95,
                "crop_box": [0, 0, WIDTH, HEIGHT],
                "point_coords": [[float(cx), float(cy)]],
            }
        )
    image = {"image_id": 1, "width": WIDTH, "height": HEIGHT, "file_name": "sa_1.jpg"}
    return {"image": image, "annotations": annotations}


def _write_input(root: Path, images: int, objects: int) -> Path:
    template = root / "template.json"
    template.write_text(json.dumps(_annotation(objects)))
    names = []
    for i in range(1, images + 1):
        folder = root / "sa1b" / f"sa_{(i - 1) // 11186:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        os.link(template, folder / f"sa_{i}.json")
        names.append(f"{folder.name}/sa_{i}.jpg")
    listing = root / "sa1b_coco_fmt_iminfo_bench.json"
    listing.write_text(json.dumps({"images": [{"file_name": name} for name in names]}))
    return listing


def _run(listing: Path, input_dir: Path, out: Path, workers: int) -> dict:
    code = (
        "import resource, sys, time\n"
        "from samlab.tools.sa1b_to_coco import sa1b_to_coco\n"
        "start = time.perf_counter()\n"
        f"sa1b_to_coco({str(listing)!r}, {str(input_dir)!r}, {str(out)!r}, workers={workers}, progress=False)\n"
        "seconds = time.perf_counter() - start\n"
        "own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(seconds, own, children)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, own, children = (float(v) for v in result.stdout.split())
    sizes = {p.name: p.stat().st_size for p in out.glob("*.json")}
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(own), "worker_peak_rss_mb": round(children), **sizes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--objects", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for images in args.images:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            listing = _write_input(root, images, args.objects)
            figures = _run(listing, root / "sa1b", root / "out", args.workers)
            print(json.dumps({"images": images, "objects_per_image": args.objects, **figures}), flush=True)


if __name__ == "__main__":
    main()

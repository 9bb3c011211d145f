"""How fast a reader indexes a dataset: the figure behind ``samlab bench index``.

Indexing is what every training start and every DataLoader worker pays before the first batch; SA-1B has 11M images,
so a reader must index without opening annotation or image files. :func:`write_placeholder_sa1b` builds a folder of
empty files in the SA-1B layout to measure exactly that.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from samlab.data.formats.base import VideoReader
from samlab.data.formats.sa1b import SA1BReader

_READERS: dict[str, Callable[[Path, Path | None], VideoReader]] = {
    "sa1b": lambda root, file_list: SA1BReader(root, file_list=file_list, strict=False),
}


def bench_index(
    root: str | os.PathLike[str], format: str = "sa1b", file_list: str | os.PathLike[str] | None = None
) -> dict[str, float]:
    """Index ``root`` once with the reader of ``format`` (non-strict, so problems do not stop the timing).

    Returns ``{"items": n, "index_seconds": t, "items_per_s": n / t, "problems": p}`` where ``t`` is wall-clock
    seconds and ``p`` the number of indexing problems found.
    """
    if format not in _READERS:
        raise ValueError(f"unknown format '{format}'; choose one of {sorted(_READERS)}")
    start = time.perf_counter()
    reader = _READERS[format](Path(root), None if file_list is None else Path(file_list))
    seconds = time.perf_counter() - start
    return {
        "items": len(reader),
        "index_seconds": seconds,
        "items_per_s": len(reader) / seconds if seconds > 0 else float("inf"),
        "problems": len(reader.problems),
    }


def write_placeholder_sa1b(
    root: str | os.PathLike[str],
    num_images: int,
    images_per_folder: int = 11_186,
    list_file: str | os.PathLike[str] | None = None,
) -> None:
    """Write ``num_images`` empty ``sa_<i>.jpg`` + ``sa_<i>.json`` pairs under ``root/sa_<k:06d>/``.

    ``images_per_folder`` defaults to the size of one SA-1B tar. The files are empty, so only an index that opens
    no file can read them. With ``list_file`` (best outside ``root``: a JSON in ``root`` is taken for an annotation),
    also writes a JSON list of all image file names there, in MASA's ``--img-list`` form.
    """
    root = Path(root)
    names = []
    for start in range(0, num_images, images_per_folder):
        folder = root / f"sa_{start // images_per_folder:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(start + 1, min(start + images_per_folder, num_images) + 1):
            for suffix in (".jpg", ".json"):
                # os.open/close is the cheapest way to create an empty file (Path.touch also stats).
                os.close(os.open(folder / f"sa_{i}{suffix}", os.O_CREAT | os.O_WRONLY, 0o644))
            names.append(f"sa_{i}.jpg")
    if list_file is not None:
        Path(list_file).write_text(json.dumps(names))

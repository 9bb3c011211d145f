"""``samlab data sa1b-to-coco``: SA-1B per-image JSONs to the two COCO files MASA trains on, streamed and resumable.

Output (fields and file names as MASA's ``tools/format_conversion/convert_sam_2_cocofmt.py`` writes them)::

    <out>/<prefix>_mask_anno.json   images{id,width,height,file_name}, annotations{bbox,area,segmentation,id,
                                    image_id,category_id: 1,iscrowd: 0}, categories [{id: 1, name: "object"}]
    <out>/<prefix>_bbox_anno.json   the same without ``segmentation`` (what MASA's training reads)

``<prefix>`` is the list file's stem without ``_iminfo`` (MASA's ``sa1b_coco_fmt_iminfo_500k.json`` gives
``sa1b_coco_fmt_500k_mask_anno.json``, MASA's own output names). Nothing grows with the number of images: the list is
parsed incrementally (``ijson``), images are converted by a process pool one shard at a time, and each shard's JSON
fragments go straight to part files under ``<out>/<prefix>.parts/``; the two outputs are then concatenated from the
parts. A shard whose part files are complete is not converted again, so an interrupted run resumes where it stopped
and ends with the same files as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import ijson

from samlab.data.formats.sa1b import SA1BImage
from samlab.errors import DataError
from samlab.progress import track

PathLike = str | os.PathLike[str]

CATEGORIES = [{"id": 1, "name": "object"}]
"""MASA's single class-agnostic category."""

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".json")
_SECTIONS = ("images", "mask", "bbox")
_COMPACT = (",", ":")
# Bytes per read when concatenating part files: the outputs are written without loading a part in memory.
_COPY_BUFFER = 1 << 18
# Bytes of the image list parsed at a time (ijson builds the entries of one buffer at once).
_LIST_BUFFER = 1 << 13


@dataclass
class ConversionSummary:
    """What :func:`sa1b_to_coco` wrote: counts, the two output files, and the images skipped with their problem."""

    images: int
    annotations: int
    mask_anno: str
    bbox_anno: str
    resumed_shards: int
    skipped: list[str] = field(default_factory=list)


def output_prefix(img_list: PathLike) -> str:
    """The output prefix of a list file: its stem without ``_iminfo`` (``sa1b_coco_fmt_iminfo_500k`` →
    ``sa1b_coco_fmt_500k``)."""
    return Path(img_list).stem.replace("_iminfo", "")


def _entry_name(entry: Any) -> str | None:
    """Relative image path without suffix of one list entry, or None when the entry is not a name."""
    if isinstance(entry, dict):
        entry = entry.get("file_name")
    if isinstance(entry, int) and not isinstance(entry, bool):
        return f"sa_{entry}"
    if not isinstance(entry, str) or not entry.strip():
        return None
    name = entry.strip()
    stem, dot, ext = name.rpartition(".")
    return stem if dot and f".{ext}".lower() in _IMAGE_SUFFIXES else name


def iter_image_list(path: PathLike) -> Iterator[str]:
    """Stream the image names of a list file without loading it whole.

    Accepts a JSON array of file names (``"sa_1.jpg"``, ``"sa_000000/sa_1.jpg"``), of integer ids (``1`` is
    ``sa_1``) or of ``{"file_name": ...}`` objects, MASA's ``{"images": [{"file_name": ...}, ...]}``, or a text file
    with one name per line. Yields each name relative to the input folder without its suffix (``"sa_1"``).
    Raises :class:`DataError` naming the file for a missing or corrupt list or an entry that is not a name.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image list is missing")
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
        f.seek(0)
        if head[:1] not in (b"[", b"{"):
            for number, line in enumerate(f, start=1):
                text = line.decode("utf-8", errors="replace").strip()
                if text:
                    name = _entry_name(text)
                    if name is None:
                        raise DataError(path, f"line {number}: not an image name")
                    yield name
            return
        items = ijson.items(f, "item" if head[:1] == b"[" else "images.item", buf_size=_LIST_BUFFER)
        index = 0
        try:
            for index, entry in enumerate(items):
                name = _entry_name(entry)
                if name is None:
                    raise DataError(path, f"entry {index}: {entry!r} is not an image file name or id")
                yield name
        except ijson.JSONError as err:
            raise DataError(path, f"corrupt JSON image list after entry {index} ({err})") from None


def convert_image(input_dir: PathLike, name: str) -> tuple[str, str, str, int] | tuple[str, str]:
    """Convert one SA-1B image: ``input_dir/<name>.json`` to COCO JSON text.

    Returns ``(image, mask annotations, bbox annotations, number of annotations)`` where the texts are the image
    object and the comma-separated annotation objects, or ``(file, problem)`` (errors cross process boundaries as
    plain strings). The JSON is checked by :class:`SA1BImage` (annotation ids unique, RLE sizes equal to the
    image size) and every annotation needs ``bbox`` (4 numbers) and ``area``.
    """
    json_path = Path(input_dir) / f"{name}.json"
    item = SA1BImage(name.rpartition("/")[2], json_path.with_suffix(".jpg"), json_path)
    try:
        item.masks(0)  # validates ids and RLE sizes
        info = item.image_info()
        try:
            image_id = int(info["image_id"])
            image = {
                "id": image_id,
                "width": int(info["width"]),
                "height": int(info["height"]),
                "file_name": str(info["file_name"]),
            }
        except (KeyError, TypeError, ValueError):
            raise DataError(json_path, "'image' needs image_id, width, height and file_name") from None
        masks, boxes = [], []
        for ann in item.annotations():
            bbox, area = ann.get("bbox"), ann.get("area")
            if not isinstance(bbox, list) or len(bbox) != 4 or not isinstance(area, (int, float)):
                raise DataError(json_path, f"annotation {ann['id']}: needs 'bbox' [x, y, w, h] and 'area'")
            box_only = {
                "bbox": bbox,
                "area": area,
                "id": ann["id"],
                "image_id": image_id,
                "category_id": 1,
                "iscrowd": 0,
            }
            full = {"bbox": bbox, "area": area, "segmentation": ann["segmentation"], **box_only}
            masks.append(json.dumps(full, separators=_COMPACT))
            boxes.append(json.dumps(box_only, separators=_COMPACT))
    except DataError as err:
        return err.path, err.message
    return json.dumps(image, separators=_COMPACT), ",".join(masks), ",".join(boxes), len(masks)


class _Parts:
    """The part files of one conversion: ``<shard>.<section>`` fragments and a ``<shard>.done`` record per shard.

    Results are added one image at a time to the open shard; :meth:`finish` makes the shard's files final and
    writes its record last, so a shard is complete exactly when its record exists.
    """

    def __init__(self, folder: Path, state: dict[str, Any], skip_bad: bool) -> None:
        self.folder = folder
        self.skip_bad = skip_bad
        state_file = folder / "state.json"
        if folder.is_dir() and (not state_file.is_file() or json.loads(state_file.read_text()) != state):
            # Parts of another list, input or shard size: they cannot be reused.
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state))
        self._shard = -1
        self._files: dict[str, Any] = {}
        self._record: dict[str, Any] = {}
        self._written: dict[str, bool] = {}

    def path(self, shard: int, suffix: str) -> Path:
        return self.folder / f"{shard:07d}.{suffix}"

    def done(self, shard: int) -> dict[str, Any] | None:
        path = self.path(shard, "done")
        return json.loads(path.read_text()) if path.is_file() else None

    def add(self, shard: int, result: tuple[str, str, str, int] | tuple[str, str]) -> None:
        if shard != self._shard:
            self._shard = shard
            # Open until finish() or close(): one shard's fragments are written as its results arrive.
            self._files = {
                s: open(self.path(shard, f"{s}.tmp"), "w", encoding="utf-8")  # noqa: SIM115
                for s in _SECTIONS
            }
            self._record = {"images": 0, "annotations": 0, "skipped": []}
            self._written = dict.fromkeys(_SECTIONS, False)
        if len(result) == 2:
            if not self.skip_bad:
                self.close()
                raise DataError(*result)
            self._record["skipped"].append(str(DataError(*result)))
            return
        for section, text in zip(_SECTIONS, result[:3]):
            if text:
                self._files[section].write(("," if self._written[section] else "") + text)
                self._written[section] = True
        self._record["images"] += 1
        self._record["annotations"] += result[3]

    def finish(self) -> None:
        self.close()
        for section in _SECTIONS:
            os.replace(self.path(self._shard, f"{section}.tmp"), self.path(self._shard, section))
        self.path(self._shard, "done.tmp").write_text(json.dumps(self._record))
        os.replace(self.path(self._shard, "done.tmp"), self.path(self._shard, "done"))

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def concatenate(self, shards: int, out: Path, sections: tuple[str, str]) -> None:
        """Write ``out`` as ``{"images": [...], "annotations": [...], "categories": [...]}`` from the parts."""
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "wb") as f:
            for key, section in zip(("images", "annotations"), sections):
                f.write((('{"' if key == "images" else '],"') + key + '":[').encode())
                first = True
                for shard in range(shards):
                    path = self.path(shard, section)
                    if path.stat().st_size == 0:
                        continue
                    if not first:
                        f.write(b",")
                    first = False
                    with open(path, "rb") as part:
                        shutil.copyfileobj(part, f, _COPY_BUFFER)
            f.write(('],"categories":' + json.dumps(CATEGORIES, separators=_COMPACT) + "}").encode())
        os.replace(tmp, out)


def _batches(names: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(names)
    while batch := list(islice(iterator, size)):
        yield batch


def sa1b_to_coco(
    img_list: PathLike,
    input_dir: PathLike,
    out_dir: PathLike,
    prefix: str | None = None,
    workers: int | None = None,
    shard_size: int = 1000,
    skip_bad: bool = False,
    progress: bool = True,
) -> ConversionSummary:
    """Convert the SA-1B images named by ``img_list`` (see :func:`iter_image_list`) to MASA's two COCO files.

    ``input_dir``: folder of the SA-1B ``<name>.json`` files (names may include subfolders). ``prefix``: output
    name prefix (default :func:`output_prefix`). ``workers``: processes (default: every core; 0 converts in this
    process). ``shard_size``: images per resumable unit. ``skip_bad``: an image whose JSON is missing or invalid is
    left out and listed in ``skipped`` instead of raising :class:`DataError`.
    Memory stays bounded whatever the number of images; a run interrupted at any point resumes on the next call
    with the same arguments and writes the same files as an uninterrupted run.
    """
    img_list, input_dir, out_dir = Path(img_list), Path(input_dir), Path(out_dir)
    if not input_dir.is_dir():
        raise DataError(input_dir, "SA-1B input folder does not exist")
    prefix = prefix or output_prefix(img_list)
    total = sum(1 for _ in iter_image_list(img_list))
    if total == 0:
        raise DataError(img_list, "the image list is empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "list": str(img_list.resolve()),
        "list_bytes": img_list.stat().st_size,
        "input": str(input_dir.resolve()),
        "entries": total,
        "shard_size": shard_size,
        "skip_bad": skip_bad,
    }
    parts = _Parts(out_dir / f"{prefix}.parts", state, skip_bad)
    workers = len(os.sched_getaffinity(0)) if workers is None else workers
    pool = Pool(workers) if workers > 0 else None
    shards = 0

    def results() -> Iterator[tuple[int, bool, tuple | None]]:
        """``(shard, last image of its shard, result or None in a shard already done)`` per image, in list order."""
        nonlocal shards
        convert = partial(convert_image, input_dir)
        for shard, batch in enumerate(_batches(iter_image_list(img_list), shard_size)):
            shards += 1
            if parts.done(shard) is not None:
                converted = (None for _ in batch)
            elif pool is None:
                converted = map(convert, batch)
            else:
                converted = pool.imap(convert, batch, chunksize=max(1, min(16, len(batch) // (4 * workers))))
            for i, result in enumerate(converted, start=1):
                yield shard, i == len(batch), result

    resumed = set()
    try:
        for shard, last, result in track(results(), "SA-1B to COCO", total=total, unit="img", enabled=progress):
            if result is None:
                resumed.add(shard)
                continue
            parts.add(shard, result)
            if last:
                parts.finish()
    finally:
        parts.close()
        if pool is not None:
            pool.terminate()
    mask_out, bbox_out = out_dir / f"{prefix}_mask_anno.json", out_dir / f"{prefix}_bbox_anno.json"
    parts.concatenate(shards, mask_out, ("images", "mask"))
    parts.concatenate(shards, bbox_out, ("images", "bbox"))
    records = [parts.done(shard) for shard in range(shards)]
    shutil.rmtree(parts.folder)
    return ConversionSummary(
        images=sum(r["images"] for r in records),
        annotations=sum(r["annotations"] for r in records),
        mask_anno=str(mask_out),
        bbox_anno=str(bbox_out),
        resumed_shards=len(resumed),
        skipped=[problem for r in records for problem in r["skipped"]],
    )

"""`samlab data check` and `samlab data stats`: validate a dataset folder and count what it holds, for any format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from samlab.data.formats.base import Problem, VideoReader
from samlab.data.sampling import read_annotated_frame
from samlab.errors import DataError

FORMATS = ("sa1b", "sav", "mose", "coco")


def _coco_sources(root: Path) -> tuple[Path, Path]:
    """The annotation JSON and image folder of a COCO dataset given as a JSON file or a dataset folder."""
    if root.is_file():
        ann_file = root
        base = root.parent.parent if root.parent.name == "annotations" else root.parent
    else:
        candidates = sorted((root / "annotations").glob("instances*.json")) or sorted(root.glob("*.json"))
        if not candidates:
            raise DataError(root, "no COCO annotation file (annotations/instances*.json) in this folder")
        ann_file, base = candidates[0], root
    split = ann_file.stem.removeprefix("instances_")
    image_root = base / split if split != ann_file.stem and (base / split).is_dir() else base / "images"
    return ann_file, image_root


def open_reader(format: str, root: str | Path, strict: bool = True, layout: str | None = None) -> VideoReader:
    """The reader of ``format`` (one of :data:`FORMATS`) over ``root``.

    ``sav``: ``layout`` "train" or "val"; detected from the folder when None (``JPEGImages_24fps`` → val).
    ``coco``: ``root`` is the annotation JSON or a folder holding ``annotations/instances*.json``; images are read
    from the split folder (``train2017/`` for ``instances_train2017.json``) or ``images/``.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(root, "dataset folder does not exist")
    if format == "mose":
        from samlab.data.formats.davis import DAVISReader

        return DAVISReader(root, strict=strict)
    if format == "sav":
        from samlab.data.formats.sav import SAVReader

        layout = layout or ("val" if (root / "JPEGImages_24fps").is_dir() else "train")
        return SAVReader(root, layout=layout, strict=strict)
    if format == "sa1b":
        from samlab.data.formats.sa1b import SA1BReader

        return SA1BReader(root, strict=strict)
    if format == "coco":
        from samlab.data.formats.coco import COCOReader

        ann_file, image_root = _coco_sources(root)
        return COCOReader(ann_file, image_root, strict=strict)
    raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")


def check_dataset(format: str, root: str | Path, layout: str | None = None) -> list[Problem]:
    """Every problem of a dataset folder: indexing problems, then per video and frame unreadable or truncated
    images, corrupt annotations, masks whose size differs from their frame, videos or images without any object."""
    try:
        reader = open_reader(format, root, strict=False, layout=layout)
    except DataError as err:
        return [Problem(err.path, err.message)]
    problems = list(getattr(reader, "problems", []))
    for index in range(len(reader)):
        try:
            video = reader[index]
        except DataError as err:
            problems.append(Problem(err.path, err.message))
            continue
        seen_object = False
        for k in range(video.num_frames):
            try:
                _, masks = read_annotated_frame(video, k)
                ids = masks.ids()
                masks.decode(ids)
                seen_object = seen_object or bool(ids)
            except DataError as err:
                problems.append(Problem(err.path, err.message))
        if not seen_object and video.num_frames:
            problems.append(Problem(video.source, f"'{video.name}' has no annotated object"))
        if video.num_frames == 0:
            problems.append(Problem(video.source, f"'{video.name}' has no annotated frame"))
    return problems


@dataclass
class DatasetStats:
    """Counts of a dataset: ``items`` (images or videos), ``frames`` (frame files), ``annotated_frames``,
    ``objects`` (distinct objects or masklets, counted per video), ``masks`` (non-empty masks)."""

    items: int = 0
    frames: int = 0
    annotated_frames: int = 0
    objects: int = 0
    masks: int = 0


def dataset_stats(format: str, root: str | Path, layout: str | None = None) -> DatasetStats:
    """Count items, frames, annotated frames, objects and non-empty masks of a dataset folder (no image decoding)."""
    reader = open_reader(format, root, strict=True, layout=layout)
    stats = DatasetStats(items=len(reader))
    for video in reader:
        stats.frames += video.total_frames
        stats.annotated_frames += video.num_frames
        objects: set[int] = set()
        for k in range(video.num_frames):
            ids = video.masks(k).ids()
            stats.masks += len(ids)
            objects.update(ids)
        stats.objects += len(objects)
    return stats

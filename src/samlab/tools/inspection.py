"""`samlab data check` and `samlab data stats`: validate a dataset folder and count what it holds, for any format."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

from samlab.data.formats.base import Problem, Video, VideoReader
from samlab.data.formats.davis import DAVISVideo
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


def missing_annotations(video: Video) -> list[Problem]:
    """Warnings for the frames of a DAVIS-layout video (MOSE, DAVIS, SA-V val) that lost their annotation PNG.

    The annotated range runs from the first to the last annotated frame file; its annotation step is the greatest
    common divisor of the gaps between annotated frames (1 for MOSE, 4 for SA-V's 6 fps PNGs of 24 fps frames), so a
    sparsely annotated video is not reported, only a frame on the step without a PNG. With one PNG per object
    (``per_object``), an object without the PNG of a frame that other objects have is reported too. Videos of
    other formats give no warning. Each warning names the missing PNG.
    """
    if not isinstance(video, DAVISVideo):
        return []
    frame_files = video.frame_files
    annotations = video.annotation_files
    position = {stem: i for i, stem in enumerate(frame_files)}
    annotated = [position[stem] for stem in annotations if stem in position]
    stems = list(frame_files)
    folder = Path(video.source)
    warnings = []
    if len(annotated) >= 2:
        step = math.gcd(*(b - a for a, b in itertools.pairwise(annotated)))
        first, last = stems[annotated[0]], stems[annotated[-1]]
        for k in range(annotated[0], annotated[-1] + 1, step):
            if stems[k] not in annotations:
                warnings.append(
                    Problem(
                        str(folder / f"{stems[k]}.png"),
                        f"video '{video.name}': frame {frame_files[stems[k]].name} has no annotation PNG (inside the "
                        f"annotated frames {first}..{last}, every {step})",
                        warning=True,
                    )
                )
    if video.per_object:
        objects = sorted({obj for pngs in annotations.values() for obj in pngs})
        for stem, pngs in annotations.items():
            for obj in objects:
                if obj not in pngs:
                    warnings.append(
                        Problem(
                            str(folder / f"{obj:03d}" / f"{stem}.png"),
                            f"video '{video.name}': object {obj:03d} has no annotation PNG for frame {stem} "
                            f"(other objects have one)",
                            warning=True,
                        )
                    )
    return warnings


def check_dataset(format: str, root: str | Path, layout: str | None = None) -> list[Problem]:
    """Every problem of a dataset folder: indexing problems, then per video and frame unreadable or truncated
    images, corrupt annotations, masks whose size differs from their frame, videos or images without any object;
    and, as warnings (``Problem.warning``), frames without annotation inside a video's annotated range
    (:func:`missing_annotations`)."""
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
        problems.extend(missing_annotations(video))
    return problems


@dataclass
class DatasetStats:
    """Counts of a dataset: ``items`` (images or videos), ``frames`` (frame files), ``annotated_frames``,
    ``objects`` (distinct objects or masklets, counted per video), ``masks`` (non-empty masks), and
    ``sparsely_annotated``: the names of the videos with frame files that have no annotation (SA-V annotates every
    4th frame, DAVIS val only the first; a MOSE train video listed here lost annotations)."""

    items: int = 0
    frames: int = 0
    annotated_frames: int = 0
    objects: int = 0
    masks: int = 0
    sparsely_annotated: list[str] = field(default_factory=list)


def dataset_stats(format: str, root: str | Path, layout: str | None = None) -> DatasetStats:
    """Count items, frames, annotated frames, objects and non-empty masks of a dataset folder (no image decoding)."""
    reader = open_reader(format, root, strict=True, layout=layout)
    stats = DatasetStats(items=len(reader))
    for video in reader:
        stats.frames += video.total_frames
        stats.annotated_frames += video.num_frames
        if video.total_frames > video.num_frames:
            stats.sparsely_annotated.append(video.name)
        objects: set[int] = set()
        for k in range(video.num_frames):
            ids = video.masks(k).ids()
            stats.masks += len(ids)
            objects.update(ids)
        stats.objects += len(objects)
    return stats

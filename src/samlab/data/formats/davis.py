"""DAVIS-layout video object segmentation sets: DAVIS 2016/2017, MOSE, and any set stored the same way.

Layout::

    <root>/<image_dir>/<video>/<frame>.jpg|.jpeg|.png
    <root>/<annotation_dir>/<video>/<frame>.png          palette PNG: value = object id, 0 background, 255 ignored
    <root>/<annotation_dir>/<video>/<obj>/<frame>.png    per_object=True: one binary PNG per object, id = int(obj)

Annotated frames are the frames that have an annotation PNG (DAVIS val annotates only the first frame of some
splits, MOSE train every frame); a PNG is matched to its frame file by file stem. SA-V val/test is the per-object
variant with other folder names (see :mod:`samlab.data.formats.sav`).
"""

from __future__ import annotations

import os
from pathlib import Path

from samlab.data.formats.base import (
    IMAGE_SUFFIXES,
    BinaryPNGMasks,
    FrameMasks,
    LabelMapMasks,
    Problem,
    Video,
    VideoReader,
    image_size,
    read_label_png,
)
from samlab.errors import DataError


def frame_sort_key(stem: str) -> tuple[int, int, str]:
    """Sort key of a frame file stem: numeric stems in numeric order (``9`` before ``10``), then the others."""
    return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


def list_frame_files(folder: Path) -> dict[str, Path]:
    """Frame files (``.jpg``, ``.jpeg``, ``.png``, any case) of ``folder`` keyed by stem, in frame order.

    Returns an empty dict when the folder does not exist.
    """
    if not folder.is_dir():
        return {}
    files = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith(".") and entry.is_file():
                files[stem] = Path(entry.path)
    return {stem: files[stem] for stem in sorted(files, key=frame_sort_key)}


def has_file(folder: Path, suffixes: tuple[str, ...]) -> bool:
    """True when ``folder`` holds at least one file ending in one of ``suffixes`` (stops at the first: cheap)."""
    if not folder.is_dir():
        return False
    with os.scandir(folder) as entries:
        return any(os.path.splitext(e.name)[1].lower() in suffixes and e.is_file() for e in entries)


def read_file_list(path: str | Path) -> list[str]:
    """Video names of a file list (DAVIS ``ImageSets/2017/train.txt`` style): one per line, extension dropped.

    Blank lines are skipped. Raises :class:`DataError` naming the file when it cannot be read.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise DataError(path, "file list is missing") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot read file list ({err})") from None
    return [os.path.splitext(line.strip())[0] for line in lines if line.strip()]


def _subfolders(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    with os.scandir(folder) as entries:
        return {e.name for e in entries if e.is_dir() and not e.name.startswith(".")}


class DAVISVideo(Video):
    """One DAVIS-layout video; lists its two folders on creation, decodes nothing until asked."""

    def __init__(self, name: str, image_folder: Path, annotation_folder: Path, per_object: bool = False) -> None:
        self.name = name
        self.source = str(annotation_folder)
        self.image_folder = image_folder
        self.annotation_folder = annotation_folder
        self.per_object = per_object
        self._frames = list_frame_files(image_folder)
        self._frame_positions = {stem: i for i, stem in enumerate(self._frames)}
        # stem -> {object id: PNG} (per-object) or stem -> {0: palette PNG}
        self._pngs: dict[str, dict[int, Path]] = {}
        if per_object:
            for object_dir in sorted(_subfolders(annotation_folder)):
                if not object_dir.isdigit():
                    raise DataError(annotation_folder / object_dir, "object folder name is not an integer object id")
                for png in (annotation_folder / object_dir).glob("*.png"):
                    self._pngs.setdefault(png.stem, {})[int(object_dir)] = png
        else:
            for png in annotation_folder.glob("*.png"):
                self._pngs[png.stem] = {0: png}
        self._stems = sorted(self._pngs, key=frame_sort_key)

    @property
    def num_frames(self) -> int:
        return len(self._stems)

    @property
    def frame_files(self) -> dict[str, Path]:
        """Every frame file on disk, annotated or not, keyed by stem, in frame order."""
        return dict(self._frames)

    @property
    def annotation_files(self) -> dict[str, dict[int, Path]]:
        """Annotation PNGs keyed by frame stem, in frame order: ``{0: palette PNG}``, or ``{object id: binary PNG}``
        with ``per_object``."""
        return {stem: dict(self._pngs[stem]) for stem in self._stems}

    @property
    def total_frames(self) -> int:
        return len(self._frames)

    def frame_path(self, k: int) -> Path:
        stem = self._stems[k]
        # A PNG without its frame names the expected .jpg, so that reading it fails with that name.
        return self._frames.get(stem, self.image_folder / f"{stem}.jpg")

    def frame_index(self, k: int) -> int:
        """Frame number from the file name (``00017.png`` is 17); for non-numeric names, the position on disk."""
        stem = self._stems[k]
        if stem.isdigit():
            return int(stem)
        return self._frame_positions.get(stem, k)

    def masks(self, k: int) -> FrameMasks:
        pngs = self._pngs[self._stems[k]]
        if not self.per_object:
            png = pngs[0]
            return LabelMapMasks(read_label_png(png), source=str(png))
        frame = self.frame_path(k)
        # The frame's header fixes the size, so a PNG of another size is reported by its own name.
        size = image_size(frame) if frame.exists() else None
        return BinaryPNGMasks(dict(pngs), size=size, source=self.source)


class DAVISReader(VideoReader):
    """Videos of a DAVIS-layout folder (DAVIS, MOSE, SA-V val/test with ``per_object=True``).

    ``file_list``: a text file of video names, one per line (DAVIS ``ImageSets/2017/train.txt``); without it,
    every video folder under ``image_dir`` or ``annotation_dir``. ``per_object``: annotations are
    ``<obj>/<frame>.png`` binary PNGs per object instead of one palette PNG per frame.
    ``strict``: raise :class:`DataError` on the first indexing problem (a video without frame files, without
    annotation folder or PNG, a file-list entry without folders); otherwise collect it in ``problems`` and leave
    the video out.
    """

    def __init__(
        self,
        root: str | Path,
        file_list: str | Path | None = None,
        image_dir: str = "JPEGImages",
        annotation_dir: str = "Annotations",
        per_object: bool = False,
        strict: bool = True,
    ) -> None:
        self.root = Path(root)
        self.image_root = self.root / image_dir
        self.annotation_root = self.root / annotation_dir
        self.per_object = per_object
        self.strict = strict
        self.problems: list[Problem] = []
        for folder in (self.image_root, self.annotation_root):
            if not folder.is_dir():
                raise DataError(folder, "folder is missing")
        if file_list is not None:
            names = read_file_list(file_list)
        else:
            names = sorted(_subfolders(self.image_root) | _subfolders(self.annotation_root), key=frame_sort_key)
        self._names = [name for name in names if self._check(name, file_list)]

    def _check(self, name: str, file_list: str | Path | None) -> bool:
        image_folder = self.image_root / name
        annotation_folder = self.annotation_root / name
        if file_list is not None and not image_folder.is_dir() and not annotation_folder.is_dir():
            self._report(file_list, f"listed video '{name}' has neither {image_folder} nor {annotation_folder}")
            return False
        if not image_folder.is_dir():
            self._report(annotation_folder, f"video '{name}' has annotations but no frame folder {image_folder}")
            return False
        if not has_file(image_folder, IMAGE_SUFFIXES):
            self._report(image_folder, f"video '{name}' has no frame files (.jpg, .jpeg, .png)")
            return False
        if not annotation_folder.is_dir():
            self._report(image_folder, f"video '{name}' has frames but no annotation folder {annotation_folder}")
            return False
        if self.per_object:
            annotated = any(has_file(annotation_folder / d, (".png",)) for d in _subfolders(annotation_folder))
        else:
            annotated = has_file(annotation_folder, (".png",))
        if not annotated:
            layout = "<obj>/<frame>.png" if self.per_object else "<frame>.png"
            self._report(annotation_folder, f"video '{name}' has no annotation PNG ({layout})")
            return False
        return True

    @property
    def names(self) -> list[str]:
        """Names of the indexed videos, in order."""
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, index: int | slice) -> DAVISVideo | list[DAVISVideo]:  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        name = self._names[index]
        return DAVISVideo(name, self.image_root / name, self.annotation_root / name, per_object=self.per_object)

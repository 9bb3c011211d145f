"""SA-V (Segment Anything Video) as released by Meta.

Train layout, after frame extraction (:func:`samlab.tools.frames.extract_frames`)::

    <root>/<video>/00000.jpg ...              every frame of the 24 fps video (.jpeg/.png also accepted)
    <json_root>/<video>_manual.json           masklet[annotated frame][object] = COCO RLE, every ann_every-th frame
    <json_root>/<video>_auto.json             optional automatic masklets (include_auto=True)

Val/test layout::

    <root>/JPEGImages_24fps/<video>/00000.jpg ...
    <root>/Annotations_6fps/<video>/<obj:03d>/00000.png     one binary PNG per object on annotated frames

Object ids: the masklet's position in the JSON (auto masklets continue after the manual ones) or ``int(<obj>)``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

from samlab.data.formats.base import IMAGE_SUFFIXES, FrameMasks, Problem, RLEMasks, Video, VideoReader
from samlab.data.formats.davis import (
    DAVISReader,
    frame_sort_key,
    has_file,
    list_frame_files,
    read_file_list,
)
from samlab.errors import DataError
from samlab.masks import RLE

# Parsed JSONs of this many recently used videos stay in memory: a training run samples a video many times, and a
# manual JSON takes tens of milliseconds to parse.
_CACHED_VIDEOS = 16


def _looks_like_json_object(path: Path) -> str | None:
    """Cheap check without parsing: None when the file starts with ``{`` and ends with ``}``, else what is wrong."""
    try:
        with path.open("rb") as f:
            head = f.read(64).lstrip()
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64))
            tail = f.read().rstrip()
    except OSError as err:
        return f"cannot read JSON ({err.strerror})"
    if not head:
        return "JSON file is empty"
    if not head.startswith(b"{") or not tail.endswith(b"}"):
        return "not a JSON object (truncated or corrupt file)"
    return None


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise DataError(path, "annotation JSON is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(path, f"not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("masklet"), list):
        raise DataError(path, "not an SA-V annotation: expected an object with a 'masklet' list")
    return data


class SAVVideo(Video):
    """One SA-V train video: frame files on disk plus its masklet JSON(s), parsed on first use and then kept."""

    def __init__(
        self, name: str, frame_folder: Path, manual_json: Path, auto_json: Path | None = None, ann_every: int = 4
    ) -> None:
        self.name = name
        self.source = str(manual_json)
        self.frame_folder = frame_folder
        self.manual_json = manual_json
        self.auto_json = auto_json
        self.ann_every = ann_every
        self._frames: dict[int, Path] | None = None
        self._num_frame_files = 0
        self._annotated: list[tuple[int, dict[int, RLE]]] | None = None
        self._size: tuple[int, int] = (0, 0)

    def _frame_files(self) -> dict[int, Path]:
        if self._frames is None:
            files = list_frame_files(self.frame_folder)
            self._num_frame_files = len(files)
            self._frames = {int(stem): path for stem, path in files.items() if stem.isdigit()}
        return self._frames

    def _masklets(self, path: Path) -> tuple[list[list[RLE | None] | None], int, dict[str, Any]]:
        """The ``masklet`` list of one JSON, its number of masklets and the whole JSON."""
        data = _load_json(path)
        frames = data["masklet"]
        widths = {len(frame) for frame in frames if frame is not None}
        if len(widths) > 1:
            raise DataError(path, f"annotated frames list different numbers of masklets: {sorted(widths)}")
        return frames, widths.pop() if widths else 0, data

    def _annotations(self) -> list[tuple[int, dict[int, RLE]]]:
        if self._annotated is not None:
            return self._annotated
        frames, num_manual, data = self._masklets(self.manual_json)
        streams = [(frames, 0)]
        if self.auto_json is not None:
            auto_frames, _, _ = self._masklets(self.auto_json)
            if len(auto_frames) != len(frames):
                raise DataError(
                    self.auto_json,
                    f"has {len(auto_frames)} annotated frames, {self.manual_json.name} {len(frames)}",
                )
            streams.append((auto_frames, num_manual))
        annotated = []
        for i, manual_entry in enumerate(frames):
            # A None frame entry means "not annotated" (SAM 2's loader drops such frames too).
            if manual_entry is None:
                continue
            rles: dict[int, RLE] = {}
            for stream, first_id in streams:
                for j, rle in enumerate(stream[i] or []):
                    if rle is not None:
                        rles[first_id + j] = rle
            annotated.append((i * self.ann_every, rles))
        self._size = self._video_size(data, annotated)
        self._annotated = annotated
        return annotated

    def _video_size(self, data: dict[str, Any], annotated: list[tuple[int, dict[int, RLE]]]) -> tuple[int, int]:
        if "video_height" in data and "video_width" in data:
            return int(data["video_height"]), int(data["video_width"])
        for _, rles in annotated:
            for rle in rles.values():
                return int(rle["size"][0]), int(rle["size"][1])
        raise DataError(self.manual_json, "no video_height/video_width and no RLE to take the frame size from")

    @property
    def num_frames(self) -> int:
        return len(self._annotations())

    @property
    def total_frames(self) -> int:
        self._frame_files()
        return self._num_frame_files

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the video as the JSON states it."""
        self._annotations()
        return self._size

    def frame_index(self, k: int) -> int:
        return self._annotations()[k][0]

    def frame_path(self, k: int) -> Path:
        index = self.frame_index(k)
        # A missing frame gets the name SA-V's extraction would give it, so reading it fails naming that file.
        return self._frame_files().get(index, self.frame_folder / f"{index:05d}.jpg")

    def masks(self, k: int) -> FrameMasks:
        _, rles = self._annotations()[k]
        return RLEMasks(rles, size=self.size, source=self.source)


class SAVReader(VideoReader):
    """SA-V videos in the ``"train"`` layout (frames + masklet JSONs) or the ``"val"``/``"test"`` layout (PNGs).

    ``json_root``: folder of the ``<video>_manual.json`` files (default ``root``); ``ann_every``: frame step of the
    annotations (4 for SA-V's 6 fps masklets on 24 fps frames); ``include_auto``: also load ``<video>_auto.json``
    where it exists, its masklets numbered after the manual ones; ``file_list``: text file of video names, one per
    line (otherwise every video folder and every manual JSON found). ``strict``: raise :class:`DataError` on an
    indexing problem (a video folder without frames, a JSON without frame folder or truncated/not a JSON object, a
    listed video that does not exist) instead of collecting it in ``problems`` and leaving the video out. JSONs are
    parsed when a video is first used, not at indexing.
    """

    def __init__(
        self,
        root: str | Path,
        layout: Literal["train", "val", "test"] = "train",
        json_root: str | Path | None = None,
        ann_every: int = 4,
        include_auto: bool = False,
        file_list: str | Path | None = None,
        strict: bool = True,
    ) -> None:
        if layout not in ("train", "val", "test"):
            raise ValueError(f"layout must be 'train', 'val' or 'test', got {layout!r}")
        if ann_every < 1:
            raise ValueError(f"ann_every must be >= 1, got {ann_every}")
        self.root = Path(root)
        self.layout = layout
        self.ann_every = ann_every
        self.include_auto = include_auto
        self.strict = strict
        self.problems: list[Problem] = []
        self._cache: OrderedDict[str, Video] = OrderedDict()
        if layout != "train":
            if json_root is not None or include_auto:
                raise ValueError("json_root and include_auto apply to the train layout only")
            self._png_reader: DAVISReader | None = DAVISReader(
                self.root,
                file_list=file_list,
                image_dir="JPEGImages_24fps",
                annotation_dir="Annotations_6fps",
                per_object=True,
                strict=strict,
            )
            self.problems = self._png_reader.problems
            self._names = self._png_reader.names
            return
        self._png_reader = None
        self.json_root = Path(json_root) if json_root is not None else self.root
        for folder in (self.root, self.json_root):
            if not folder.is_dir():
                raise DataError(folder, "folder is missing")
        if file_list is not None:
            names = read_file_list(file_list)
        else:
            folders = {p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")}
            jsons = {p.name[: -len("_manual.json")] for p in self.json_root.glob("*_manual.json")}
            names = sorted(folders | jsons, key=frame_sort_key)
        self._names = [name for name in names if self._check(name, file_list)]

    def _check(self, name: str, file_list: str | Path | None) -> bool:
        folder = self.root / name
        manual = self.json_root / f"{name}_manual.json"
        if not folder.is_dir():
            where = file_list if file_list is not None and not manual.exists() else manual
            self._report(where, f"video '{name}' has no frame folder {folder} (run `extract_frames` on its .mp4)")
            return False
        if not has_file(folder, IMAGE_SUFFIXES):
            self._report(folder, f"video '{name}' has no frame files (.jpg, .jpeg, .png)")
            return False
        if not manual.is_file():
            self._report(manual, f"video '{name}' has frames but its manual annotation JSON is missing")
            return False
        for path in (manual, self._auto_json(name)):
            problem = _looks_like_json_object(path) if path is not None else None
            if problem is not None:
                self._report(path, problem)
                return False
        return True

    def _auto_json(self, name: str) -> Path | None:
        path = self.json_root / f"{name}_auto.json"
        return path if self.include_auto and path.is_file() else None

    @property
    def names(self) -> list[str]:
        """Names of the indexed videos, in order."""
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, index: int | slice) -> Video | list[Video]:  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        if self._png_reader is not None:
            return self._png_reader[index]
        name = self._names[index]
        video = self._cache.pop(name, None)
        if video is None:
            video = SAVVideo(
                name,
                self.root / name,
                self.json_root / f"{name}_manual.json",
                auto_json=self._auto_json(name),
                ann_every=self.ann_every,
            )
        self._cache[name] = video
        if len(self._cache) > _CACHED_VIDEOS:
            self._cache.popitem(last=False)
        return video

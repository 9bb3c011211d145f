"""SA-1B reader: ``<root>/<name>.jpg`` + ``<root>/<name>.json``, possibly in tar-extracted subfolders.

Each image is a one-frame :class:`Video` whose objects are the JSON's annotations (object id = annotation ``id``).
Indexing only lists folders: SA-1B has 11M images, so no JSON is parsed and no image is opened until a sample
needs it, and the index is three numpy arrays (names, folder ids, suffix ids) rather than one object per image, so
that forked DataLoader workers share it without copy-on-read growth.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, overload

import numpy as np

from samlab.data.formats.base import IMAGE_SUFFIXES, ImageVideo, Problem, RLEMasks, VideoReader
from samlab.errors import DataError
from samlab.masks import RLE

_LISTED_SUFFIXES = (*IMAGE_SUFFIXES, ".json")


class SA1BImage(ImageVideo):
    """One SA-1B image as a one-frame video; its JSON is parsed on first use and kept for this object's lifetime."""

    kind = "SA-1B image"

    def __init__(self, name: str, image_path: Path, json_path: Path) -> None:
        self.name = name
        self.image_path = image_path
        self.json_path = json_path
        self.source = str(json_path)

    @cached_property
    def _record(self) -> dict[str, Any]:
        # The sampler asks for the masks twice (object ids, then decoding): parse the JSON once per Video.
        try:
            with open(self.json_path, "rb") as f:
                record = json.load(f)
        except FileNotFoundError:
            raise DataError(self.json_path, "annotation JSON is missing") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(self.json_path, f"corrupt annotation JSON ({err})") from None
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("image"), dict)
            or not isinstance(record.get("annotations"), list)
        ):
            raise DataError(self.json_path, "not an SA-1B annotation file (needs an 'image' dict and 'annotations')")
        return record

    def image_info(self) -> dict[str, Any]:
        """The JSON's ``image`` dict: ``image_id``, ``width``, ``height``, ``file_name``."""
        return self._record["image"]

    def annotations(self) -> list[dict[str, Any]]:
        """The JSON's raw annotation dicts (``id``, ``segmentation``, ``bbox``, ``area``, ``predicted_iou``, ...)."""
        return self._record["annotations"]

    def masks(self, k: int) -> RLEMasks:
        """:class:`RLEMasks` keyed by annotation id; RLEs are only decoded for the ids passed to ``decode``.

        Raises :class:`DataError` naming the JSON when ``image.width/height`` is missing or differs from an RLE's
        ``size``, or when an annotation lacks ``id``/``segmentation`` or repeats an id.
        """
        self._check_k(k)
        info = self.image_info()
        try:
            size = (int(info["height"]), int(info["width"]))
        except (KeyError, TypeError, ValueError):
            raise DataError(self.json_path, "'image' has no integer 'width'/'height'") from None
        rles: dict[int, RLE] = {}
        for ann in self.annotations():
            try:
                ann_id = int(ann["id"])
                rle = ann["segmentation"]
                rle_size = [int(v) for v in rle["size"]]
            except (KeyError, TypeError, ValueError):
                raise DataError(
                    self.json_path, f"annotation {ann.get('id')!r} has no 'id' or RLE 'segmentation'"
                ) from None
            if rle_size != list(size):
                raise DataError(
                    self.json_path,
                    f"annotation {ann_id}: RLE size {rle_size} (HxW) differs from image height/width {list(size)}",
                )
            if ann_id in rles:
                raise DataError(self.json_path, f"annotation id {ann_id} appears twice")
            rles[ann_id] = rle
        return RLEMasks(rles, size, str(self.json_path))


def read_name_list(path: str | os.PathLike[str]) -> list[str]:
    """Image names from a file list: a JSON list of names (MASA's ``--img-list``) or a text file, one per line.

    Returns each entry's name without folder and without an image or ``.json`` suffix: ``"sa_1.jpg"``,
    ``"sa_000000/sa_1.jpg"`` and ``"sa_1"`` all give ``"sa_1"``.
    Blank lines are skipped. Raises :class:`DataError` naming the file when it is missing or not a list of strings.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "file list is missing") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot read file list ({err})") from None
    if path.suffix == ".json" or text.lstrip().startswith("["):
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(path, f"corrupt JSON file list ({err})") from None
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise DataError(path, "JSON file list must be a list of image file names")
    else:
        entries = text.splitlines()
    stems = []
    for entry in entries:
        # str methods rather than os.path: this runs once per listed image (11M for all of SA-1B).
        name = entry.strip().rpartition("/")[2]
        stem, dot, ext = name.rpartition(".")
        if dot and f".{ext}".lower() in _LISTED_SUFFIXES:
            name = stem
        if name:
            stems.append(name)
    return stems


class SA1BReader(VideoReader):
    """Images of an SA-1B folder (scanned recursively), or of the subset named by ``file_list``.

    ``root``: folder of ``<name>.jpg`` + ``<name>.json`` pairs (``.jpeg``/``.png`` images are accepted too), possibly
    in subfolders such as ``sa_000000/``. ``file_list``: optional text or JSON list of image names
    (see :func:`read_name_list`); items then follow its order, otherwise sorted by name.
    Problems found while indexing (an image without JSON or the reverse, a name present in two subfolders, a listed
    name not on disk, no pair at all) raise :class:`DataError` when ``strict``, else are appended to ``problems``
    and the item is left out. A missing ``root`` or an unreadable file list always raises.
    """

    def __init__(
        self, root: str | os.PathLike[str], file_list: str | os.PathLike[str] | None = None, strict: bool = True
    ) -> None:
        self.root = Path(root)
        self.strict = strict
        self.problems: list[Problem] = []
        if not self.root.is_dir():
            raise DataError(self.root, "SA-1B root folder does not exist")
        self._folders: list[str] = []
        self._suffixes: list[str] = []
        names, folder_ids, suffix_ids = self._scan()
        order = np.argsort(names, kind="stable")
        names, folder_ids, suffix_ids = names[order], folder_ids[order], suffix_ids[order]
        keep = np.ones(len(names), dtype=bool)
        for i in np.flatnonzero(names[1:] == names[:-1]) + 1:
            keep[i] = False
            self._report(
                self.root / self._folders[folder_ids[i]] / f"{names[i]}{self._suffixes[suffix_ids[i]]}",
                f"image name '{names[i]}' also exists in {self.root / self._folders[folder_ids[i - 1]]}",
            )
        names, folder_ids, suffix_ids = names[keep], folder_ids[keep], suffix_ids[keep]
        if file_list is not None:
            position = {name: i for i, name in enumerate(names.tolist())}
            selected = []
            for name in read_name_list(file_list):
                i = position.get(name)
                if i is None:
                    self._report(Path(file_list), f"listed image '{name}' has no image/JSON pair under {self.root}")
                else:
                    selected.append(i)
            chosen = np.asarray(selected, dtype=np.int64)
            names, folder_ids, suffix_ids = names[chosen], folder_ids[chosen], suffix_ids[chosen]
        if len(names) == 0:
            self._report(self.root, "no SA-1B image/JSON pair found")
        self._names = names
        self._folder_ids = folder_ids
        self._suffix_ids = suffix_ids

    def _scan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One ``os.scandir`` pass per folder; pairs images and JSONs by stem within each folder."""
        names: list[str] = []
        folder_ids: list[int] = []
        suffix_ids: list[int] = []
        suffix_code: dict[str, int] = {}
        pending = [""]
        while pending:
            rel = pending.pop()
            folder = self.root / rel
            images: dict[str, str] = {}
            jsons: set[str] = set()
            with os.scandir(folder) as entries:
                for entry in entries:
                    stem, dot, ext = entry.name.rpartition(".")
                    suffix = dot + ext
                    if suffix == ".json":
                        jsons.add(stem)
                    elif dot and suffix.lower() in IMAGE_SUFFIXES:
                        images[stem] = suffix
                    elif entry.is_dir():
                        pending.append(os.path.join(rel, entry.name))
            folder_id = len(self._folders)
            self._folders.append(rel)
            for stem, suffix in images.items():
                if stem in jsons:
                    names.append(stem)
                    folder_ids.append(folder_id)
                    suffix_ids.append(suffix_code.setdefault(suffix, len(suffix_code)))
                else:
                    self._report(folder / f"{stem}{suffix}", "image has no annotation JSON")
            for stem in jsons.difference(images):
                self._report(folder / f"{stem}.json", "annotation JSON has no image")
        self._suffixes = list(suffix_code)
        return (
            np.array(names, dtype=str),
            np.array(folder_ids, dtype=np.int32),
            np.array(suffix_ids, dtype=np.uint8),
        )

    def __len__(self) -> int:
        return len(self._names)

    @overload
    def __getitem__(self, i: int) -> SA1BImage: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[SA1BImage]: ...

    def __getitem__(self, i: int | slice) -> SA1BImage | Sequence[SA1BImage]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        name = str(self._names[i])
        folder = self.root / self._folders[self._folder_ids[i]]
        return SA1BImage(name, folder / f"{name}{self._suffixes[self._suffix_ids[i]]}", folder / f"{name}.json")

    @property
    def names(self) -> list[str]:
        """Image names (file stems) in item order."""
        return self._names.tolist()

    def image_info(self, i: int) -> dict[str, Any]:
        """The ``image`` dict of item ``i``'s JSON (parses it)."""
        return self[i].image_info()

    def annotations(self, i: int) -> list[dict[str, Any]]:
        """Raw annotation dicts of item ``i`` (parses its JSON), e.g. for SA-1B → COCO conversion."""
        return self[i].annotations()

"""COCO instances reader: one annotation JSON (``images``, ``annotations``, ``categories``) + an image folder.

Each image is a one-frame :class:`Video`; its objects are its annotations (object id = annotation ``id``,
``labels()`` = category ids). Segmentations may be polygons, compressed RLE (str or bytes counts) or uncompressed
RLE (list counts, usually crowd regions); they are decoded only when a sample needs them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Container, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from samlab.data.formats.base import ImageVideo, Problem, SegmentationMasks, VideoReader
from samlab.errors import DataError
from samlab.masks import rle_area


class COCOImage(ImageVideo):
    """One COCO image as a one-frame video.

    ``annotations`` are the image's valid annotations (crowd ones included, flagged by ``iscrowd``); ``objects``
    are those that count as objects (crowd ones only with ``include_crowd``).
    """

    kind = "COCO image"

    def __init__(
        self,
        info: dict[str, Any],
        image_path: Path,
        ann_file: Path,
        annotations: list[dict[str, Any]],
        objects: list[dict[str, Any]],
    ) -> None:
        self.info = info
        self.name = os.path.splitext(info["file_name"])[0]
        self.image_path = image_path
        self.source = str(ann_file)
        self.annotations = annotations
        self.objects = objects
        self.size = (int(info["height"]), int(info["width"]))

    def masks(self, k: int) -> SegmentationMasks:
        """:class:`SegmentationMasks` of the objects keyed by annotation id, of the ``images`` entry's size."""
        self._check_k(k)
        return SegmentationMasks({int(a["id"]): a["segmentation"] for a in self.objects}, self.size, self.source)

    def labels(self) -> dict[int, int]:
        """Category id of each object (annotation id → ``category_id``)."""
        return {int(a["id"]): int(a["category_id"]) for a in self.objects}


def _polygon_area(polygon: Sequence[float]) -> float:
    xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _segmentation_problem(segmentation: Any, area: Any, height: int, width: int) -> str | None:
    """What is wrong with an annotation's ``segmentation`` and ``area`` on a ``height`` x ``width`` image, or None.

    Cheap checks only, no mask decoding (COCO train has 860K annotations): a polygon's area is taken from the
    ``area`` field when present, computed otherwise.
    """
    if area is not None and float(area) <= 0:
        return f"zero area ({area})"
    if isinstance(segmentation, list):
        if not segmentation:
            return "empty segmentation (no polygon)"
        for polygon in segmentation:
            if not isinstance(polygon, list) or len(polygon) % 2:
                return "polygon is not a flat list of x, y pairs"
            if len(polygon) < 6:
                return f"degenerate polygon with {len(polygon) // 2} point(s) (needs >= 3)"
        if area is None and sum(_polygon_area(p) for p in segmentation) <= 0:
            return "zero-area polygon"
        return None
    if not isinstance(segmentation, dict) or "counts" not in segmentation or "size" not in segmentation:
        return "segmentation is neither polygons nor an RLE dict with 'size' and 'counts'"
    rle_size = [int(v) for v in segmentation["size"]]
    if rle_size != [height, width]:
        return f"RLE size {rle_size} (HxW) differs from the image's height/width {[height, width]}"
    counts = segmentation["counts"]
    if isinstance(counts, list):
        if sum(counts) != height * width:
            return f"uncompressed RLE counts sum to {sum(counts)}, not height*width = {height * width}"
        return None if any(counts[1::2]) else "zero-area RLE"
    return None if rle_area(segmentation) > 0 else "zero-area RLE"


def _box_problem(bbox: Any) -> str | None:
    """What is wrong with an annotation's optional COCO ``bbox`` ``[x, y, w, h]``, or None."""
    if bbox is None:
        return None
    if not isinstance(bbox, list) or len(bbox) != 4:
        return f"bbox {bbox!r} is not [x, y, w, h]"
    if float(bbox[2]) <= 0 or float(bbox[3]) <= 0:
        return f"zero-area box {bbox}"
    return None


def annotation_problem(
    ann: Any, images: Mapping[int, dict[str, Any]], categories: Container[int], seen_ids: Container[int]
) -> str | None:
    """What is wrong with one ``annotations`` entry, or None when it is usable.

    ``images``: the valid ``images`` entries by id (their ``height``/``width`` check RLE sizes); ``categories``: the
    known category ids; ``seen_ids``: annotation ids already taken. Checks: required fields, repeated id, unknown
    image or category, zero-area or malformed ``bbox``, degenerate polygon (< 3 points), zero area, RLE size. The
    message does not name the annotation; callers prefix ``annotation <id>:``.
    """
    try:
        ann_id = int(ann["id"])
        image_id = int(ann["image_id"])
        category_id = int(ann["category_id"])
        segmentation = ann["segmentation"]
    except (KeyError, TypeError, ValueError):
        return "needs 'id', 'image_id', 'category_id' and 'segmentation'"
    if ann_id in seen_ids:
        return "id appears twice"
    if image_id not in images:
        return f"unknown or left-out image id {image_id}"
    if category_id not in categories:
        return f"unknown category id {category_id}"
    info = images[image_id]
    try:
        return _box_problem(ann.get("bbox")) or _segmentation_problem(
            segmentation, ann.get("area"), int(info["height"]), int(info["width"])
        )
    except (TypeError, ValueError) as err:
        return f"malformed segmentation, bbox or area ({err})"


def load_instances(ann_file: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a COCO instances JSON: a dict with ``images``, ``annotations`` and ``categories`` lists.

    Raises :class:`DataError` naming the file when it is missing, corrupt or lacks one of the three lists.
    """
    try:
        with open(ann_file, "rb") as f:
            dataset = json.load(f)
    except FileNotFoundError:
        raise DataError(ann_file, "COCO annotation file is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(ann_file, f"corrupt COCO annotation JSON ({err})") from None
    if not isinstance(dataset, dict):
        raise DataError(ann_file, "not a COCO instances file (top level is not a dict)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise DataError(ann_file, f"not a COCO instances file (no '{key}' list)")
    return dataset


class COCOReader(VideoReader):
    """Images of a COCO instances JSON, each a one-frame :class:`Video` whose objects are its annotations.

    ``ann_file``: the JSON; ``image_root``: the folder that ``file_name`` is relative to. ``include_crowd=False``
    (the default, as SAM-style training wants one instance per mask) keeps crowd annotations (``iscrowd: 1``) out
    of the objects; they are still listed by :meth:`annotations` for evaluation. ``category_ids``: keep only
    annotations of these categories (None keeps all). Images without any object are still items.

    Problems found while indexing — an annotation of an unknown image or category, a repeated id, a degenerate
    polygon (< 3 points), a zero-area annotation or box, an RLE whose size differs from the image's ``width/height``
    (see :func:`annotation_problem`), an image entry without ``width/height`` or whose file is missing — raise
    :class:`DataError` naming the JSON (or the image file) when ``strict``, else are appended to ``problems`` and the
    annotation or image is left out.
    A missing or corrupt JSON and unknown ``category_ids`` always raise. ``check_files=False`` skips the check that
    image files exist (tools that rewrite the JSON only). ``extra``: the JSON's other top-level keys (``info``,
    ``licenses``, ...).
    """

    def __init__(
        self,
        ann_file: str | os.PathLike[str],
        image_root: str | os.PathLike[str],
        include_crowd: bool = False,
        category_ids: Iterable[int] | None = None,
        strict: bool = True,
        check_files: bool = True,
    ) -> None:
        self.ann_file = Path(ann_file)
        self.root = Path(image_root)
        self.check_files = check_files
        self.include_crowd = include_crowd
        self.strict = strict
        self.problems: list[Problem] = []
        dataset = load_instances(self.ann_file)
        self.extra = {k: v for k, v in dataset.items() if k not in ("images", "annotations", "categories")}
        self.categories: dict[int, dict[str, Any]] = {}
        for category in dataset["categories"]:
            try:
                self.categories[int(category["id"])] = category
            except (KeyError, TypeError, ValueError):
                raise DataError(self.ann_file, f"category entry {category!r} has no integer 'id'") from None
        if category_ids is not None:
            wanted = {int(c) for c in category_ids}
            unknown = sorted(wanted.difference(self.categories))
            if unknown:
                raise DataError(self.ann_file, f"category_ids {unknown} are not among its categories")
        else:
            wanted = set(self.categories)
        self.category_ids = sorted(wanted)

        images = self._index_images(dataset["images"])
        annotations_of: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in images}
        seen_ids: set[int] = set()
        for ann in dataset["annotations"]:
            message = annotation_problem(ann, images, self.categories, seen_ids)
            if message is not None:
                ann_id = ann.get("id") if isinstance(ann, dict) else None
                self._report(self.ann_file, f"annotation {ann_id!r}: {message}")
                continue
            seen_ids.add(int(ann["id"]))
            if int(ann["category_id"]) in wanted:
                annotations_of[int(ann["image_id"])].append(ann)
        self._images = [images[image_id] for image_id in images]
        self._annotations = [annotations_of[image_id] for image_id in images]

    def _index_images(self, entries: list[Any]) -> dict[int, dict[str, Any]]:
        """Valid ``images`` entries by id, in file order; one directory listing per image folder."""
        images: dict[int, dict[str, Any]] = {}
        for info in entries:
            try:
                image_id = int(info["id"])
                file_name = info["file_name"]
                valid = isinstance(file_name, str) and int(info["height"]) > 0 and int(info["width"]) > 0
            except (KeyError, TypeError, ValueError):
                valid = False
            if not valid:
                entry_id = info.get("id") if isinstance(info, dict) else None
                self._report(
                    self.ann_file, f"image entry {entry_id!r} needs 'id', 'file_name' and positive 'width/height'"
                )
            elif image_id in images:
                self._report(self.ann_file, f"image id {image_id} appears twice")
            else:
                images[image_id] = info
        if not self.check_files:
            return images
        listings: dict[str, set[str]] = {}
        for image_id in list(images):
            folder, _, name = images[image_id]["file_name"].rpartition("/")
            if folder not in listings:
                try:
                    listings[folder] = set(os.listdir(self.root / folder))
                except (FileNotFoundError, NotADirectoryError):
                    listings[folder] = set()
            if name not in listings[folder]:
                self._report(
                    self.root / images[image_id]["file_name"], f"image {image_id} of {self.ann_file} is missing"
                )
                del images[image_id]
        return images

    def __len__(self) -> int:
        return len(self._images)

    @overload
    def __getitem__(self, i: int) -> COCOImage: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[COCOImage]: ...

    def __getitem__(self, i: int | slice) -> COCOImage | Sequence[COCOImage]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        info = self._images[i]
        annotations = self._annotations[i]
        objects = annotations if self.include_crowd else [a for a in annotations if not a.get("iscrowd", 0)]
        return COCOImage(info, self.root / info["file_name"], self.ann_file, annotations, objects)

    def coco_image(self, i: int) -> dict[str, Any]:
        """The ``images`` entry of item ``i`` (``id``, ``file_name``, ``width``, ``height``, ...)."""
        return self._images[i]

    def annotations(self, i: int) -> list[dict[str, Any]]:
        """Valid annotation dicts of item ``i`` within ``category_ids``, crowd ones included (``iscrowd: 1``)."""
        return self._annotations[i]

"""``samlab data extract-objects``: a bank of cut-out instances (RGBA PNGs + ``objects.json``) for copy-paste.

Layout of a bank folder::

    OUT/<ann_id>.png   the crop of an instance's box (plus a margin), RGBA: colour from the image, alpha 255 on the
                       instance's mask and 0 elsewhere
    OUT/objects.json   {"objects": [{"file", "ann_id", "image_id", "category_id", "category_name", "source_image",
                       "bbox", "crop", "area"}, ...], "categories": [...]} with ``bbox``/``crop`` as COCO
                       ``[x, y, w, h]`` in the source image and ``area`` the mask's pixel count
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from samlab.errors import DataError
from samlab.masks import mask_to_box
from samlab.progress import track

BANK_INDEX = "objects.json"


def extract_objects(
    ann_file: str | os.PathLike[str],
    image_root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    min_area: float = 64.0,
    margin: int = 2,
    strict: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Cut every non-crowd instance of a COCO set with at least ``min_area`` pixels into the bank folder ``out``.

    ``margin``: pixels added around each instance's tight box (clipped to the image); the margin stays transparent.
    Bad annotations, image entries or missing images raise :class:`DataError` when ``strict``, else are left out
    and counted (see :class:`~samlab.data.formats.coco.COCOReader`). Returns counts: ``objects`` written,
    ``too_small`` instances left out, ``skipped`` bad entries.
    """
    from samlab.data.formats.coco import COCOReader

    reader = COCOReader(ann_file, image_root, strict=strict)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    names = {category_id: c.get("name", "") for category_id, c in reader.categories.items()}
    objects: list[dict[str, Any]] = []
    too_small = 0
    for i in track(range(len(reader)), "extract-objects", unit="img", enabled=progress):
        video = reader[i]
        ids = video.masks(0).ids()
        if not ids:
            continue
        image = video.read_frame(0)
        masks = video.masks(0).decode(ids)
        height, width = masks.shape[1:]
        labels = video.labels()
        for ann_id, mask in zip(ids, masks, strict=True):
            area = int(np.count_nonzero(mask))
            if area < min_area:
                too_small += 1
                continue
            x0, y0, x1, y1 = (int(v) for v in mask_to_box(mask))
            cx0, cy0 = max(0, x0 - margin), max(0, y0 - margin)
            cx1, cy1 = min(width, x1 + margin), min(height, y1 + margin)
            rgba = np.dstack([image[cy0:cy1, cx0:cx1], mask[cy0:cy1, cx0:cx1].astype(np.uint8) * 255])
            name = f"{ann_id}.png"
            if not cv2.imwrite(str(folder / name), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)):
                raise DataError(folder / name, "could not write the cut-out PNG")
            objects.append(
                {
                    "file": name,
                    "ann_id": ann_id,
                    "image_id": int(reader.coco_image(i)["id"]),
                    "category_id": labels[ann_id],
                    "category_name": names[labels[ann_id]],
                    "source_image": reader.coco_image(i)["file_name"],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "crop": [cx0, cy0, cx1 - cx0, cy1 - cy0],
                    "area": area,
                }
            )
    index = {"objects": objects, "categories": list(reader.categories.values())}
    (folder / BANK_INDEX).write_text(json.dumps(index, indent=1))
    return {"objects": len(objects), "too_small": too_small, "skipped": len(reader.problems)}


@dataclass
class BankObject:
    """One cut-out of an :class:`ObjectBank`: ``rgb`` ``[h, w, 3]`` uint8, ``mask`` ``[h, w]`` bool (the alpha),
    and its ``category_id`` and source annotation id ``ann_id``."""

    rgb: np.ndarray
    mask: np.ndarray
    category_id: int
    ann_id: int


class ObjectBank:
    """The objects of a bank folder written by :func:`extract_objects`; PNGs are read when an object is asked for.

    ``folder``: the bank; ``category_ids``: keep only these categories (None: all). ``records``: the kept entries
    of ``objects.json``; ``categories``: its category list. An empty bank (after filtering) is a :class:`DataError`.
    """

    def __init__(self, folder: str | os.PathLike[str], category_ids: list[int] | None = None) -> None:
        self.folder = Path(folder)
        index_file = self.folder / BANK_INDEX
        try:
            index = json.loads(index_file.read_text())
            records = index["objects"]
            self.categories: list[dict[str, Any]] = index["categories"]
        except FileNotFoundError:
            raise DataError(
                index_file, "object bank index is missing (write it with samlab data extract-objects)"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(index_file, f"corrupt object bank index ({err})") from None
        wanted = None if category_ids is None else set(category_ids)
        self.records: list[dict[str, Any]] = [r for r in records if wanted is None or r["category_id"] in wanted]
        if not self.records:
            raise DataError(index_file, "the object bank has no object" + (" of those categories" if wanted else ""))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> BankObject:
        """Object ``i`` read from its PNG; :class:`DataError` naming the file when it is missing or not RGBA."""
        record = self.records[i]
        path = self.folder / record["file"]
        bgra = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if bgra is None or bgra.ndim != 3 or bgra.shape[2] != 4:
            raise DataError(path, f"object {record['ann_id']}: missing, unreadable or not an RGBA PNG")
        return BankObject(
            rgb=cv2.cvtColor(bgra[..., :3], cv2.COLOR_BGR2RGB),
            mask=bgra[..., 3] > 127,
            category_id=int(record["category_id"]),
            ann_id=int(record["ann_id"]),
        )

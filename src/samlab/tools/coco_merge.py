"""``samlab data merge``: several COCO instances JSONs (e.g. train + val) into one, with new ids."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from samlab.errors import DataError
from samlab.progress import track


def _merged_categories(readers: Sequence[Any]) -> list[dict[str, Any]]:
    """The union of the inputs' categories by id; an id or a name that means two things is a :class:`DataError`."""
    by_id: dict[int, tuple[dict[str, Any], Path]] = {}
    by_name: dict[str, tuple[int, Path]] = {}
    for reader in readers:
        for category_id, category in reader.categories.items():
            name = category.get("name")
            if category_id in by_id and by_id[category_id][0].get("name") != name:
                first, where = by_id[category_id]
                raise DataError(
                    reader.ann_file,
                    f"category {category_id} is named {name!r} here but {first.get('name')!r} in {where}",
                )
            if name in by_name and by_name[name][0] != category_id:
                other_id, where = by_name[name]
                raise DataError(
                    reader.ann_file, f"category {name!r} has id {category_id} here but id {other_id} in {where}"
                )
            by_id.setdefault(category_id, (category, reader.ann_file))
            by_name.setdefault(name, (category_id, reader.ann_file))
    return [by_id[category_id][0] for category_id in sorted(by_id)]


def merge_coco(
    inputs: Sequence[str | os.PathLike[str]],
    out_file: str | os.PathLike[str],
    prefixes: Sequence[str] | None = None,
    strict: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Merge COCO instances JSONs into ``out_file``.

    ``inputs``: the JSONs, in order; images and annotations get new contiguous ids ``1, 2, ...`` in that order.
    Categories must agree: an id with two names, or a name with two ids, in different inputs is a
    :class:`DataError` naming both files; the output holds their union. ``prefixes``: one string per input
    prepended to its ``file_name`` values (``"train2017/"``); without it, a ``file_name`` present in two inputs is a
    :class:`DataError` naming both files. ``info`` comes from the first input that has one; ``licenses`` are the
    union by id (first one wins). Bad annotations or image entries raise :class:`DataError` naming the file and the
    annotation id when ``strict``, else are left out and counted. Image files are not needed.

    Returns counts: ``images``, ``annotations``, ``categories`` written and ``skipped`` bad entries.
    """
    from samlab.data.formats.coco import COCOReader

    if prefixes is not None and len(prefixes) != len(inputs):
        raise ValueError(f"merge_coco got {len(inputs)} inputs but {len(prefixes)} prefixes")
    readers = [COCOReader(p, ".", include_crowd=True, strict=strict, check_files=False) for p in inputs]
    categories = _merged_categories(readers)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    owner_of_name: dict[str, Path] = {}
    for k, reader in enumerate(readers):
        prefix = prefixes[k] if prefixes is not None else ""
        for i in track(range(len(reader)), f"merge {reader.ann_file.name}", unit="img", enabled=progress):
            image = dict(reader.coco_image(i))
            image["file_name"] = prefix + image["file_name"]
            if image["file_name"] in owner_of_name:
                where = owner_of_name[image["file_name"]]
                raise DataError(
                    reader.ann_file,
                    f"image file_name {image['file_name']!r} is also in {where}; give each input a --prefix",
                )
            owner_of_name[image["file_name"]] = reader.ann_file
            image["id"] = len(images) + 1
            images.append(image)
            for ann in reader.annotations(i):
                annotations.append({**ann, "id": len(annotations) + 1, "image_id": image["id"]})
    info = next((r.extra["info"] for r in readers if "info" in r.extra), None)
    licenses: dict[Any, dict[str, Any]] = {}
    for reader in readers:
        for license_entry in reader.extra.get("licenses", []):
            licenses.setdefault(license_entry.get("id"), license_entry)
    merged = {"info": info} if info is not None else {}
    merged |= {"licenses": list(licenses.values())} if licenses else {}
    merged |= {"images": images, "annotations": annotations, "categories": categories}
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merged))
    return {
        "images": len(images),
        "annotations": len(annotations),
        "categories": len(categories),
        "skipped": sum(len(r.problems) for r in readers),
    }

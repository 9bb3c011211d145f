"""TAO-format tracking ground truth and results (the layout TETA and MASA's TAO tests read).

Ground truth is one JSON file::

    {"videos": [{"id", "name", ...}], "images": [{"id", "video_id", "frame_index", ...}],
     "annotations": [{"image_id", "track_id", "category_id", "bbox": [x, y, w, h], ...}],
     "categories": [{"id", "name"[, "merged": [{"id"}, ...]]}], "tracks": [...]}

Results are a JSON list (or ``{"annotations": [...]}``) of ``{"image_id", "category_id", "bbox": [x, y, w, h],
"score", "track_id"[, "video_id"][, "segmentation": RLE]}``, as MASA's ``tao_track.json``. No torch here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from samlab.errors import DataError

PathLike = str | os.PathLike[str]

_GT_KEYS = ("videos", "images", "annotations", "categories")
_ANN_KEYS = ("image_id", "track_id", "category_id", "bbox")
_RESULT_KEYS = ("image_id", "category_id", "bbox", "score", "track_id")


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, f"{what} file is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(path, f"cannot read {what} as JSON ({err})") from None


def _check_entries(path: Path, kind: str, entries: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(entries, list):
        raise DataError(path, f"'{kind}' must be a list")
    for n, entry in enumerate(entries):
        missing = [k for k in keys if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise DataError(path, f"{kind}[{n}] has no {', '.join(repr(k) for k in missing)}")
        if "bbox" in keys and (not isinstance(entry["bbox"], list) or len(entry["bbox"]) != 4):
            raise DataError(path, f"{kind}[{n}]: bbox must be [x, y, w, h], got {entry['bbox']!r}")


def read_tao_ground_truth(path: PathLike) -> dict[str, Any]:
    """Read a TAO ground-truth JSON (see the module docstring): the parsed dict, checked.

    Raises :class:`DataError` naming the file for a missing key, an entry without ``image_id`` / ``track_id`` /
    ``category_id`` / ``bbox``, an image without ``video_id`` / ``frame_index``, or an unknown video or image id.
    """
    path = Path(path)
    data = _load_json(path, "TAO ground-truth")
    if not isinstance(data, dict) or any(k not in data for k in _GT_KEYS):
        raise DataError(path, f"TAO ground truth needs the keys {', '.join(_GT_KEYS)}")
    _check_entries(path, "videos", data["videos"], ("id",))
    _check_entries(path, "images", data["images"], ("id", "video_id", "frame_index"))
    _check_entries(path, "annotations", data["annotations"], _ANN_KEYS)
    _check_entries(path, "categories", data["categories"], ("id", "name"))
    videos = {v["id"] for v in data["videos"]}
    for image in data["images"]:
        if image["video_id"] not in videos:
            raise DataError(path, f"image {image['id']} belongs to video {image['video_id']}, which is not listed")
    images = {i["id"] for i in data["images"]}
    for n, ann in enumerate(data["annotations"]):
        if ann["image_id"] not in images:
            raise DataError(path, f"annotations[{n}]: image {ann['image_id']} is not listed")
    return data


def read_tao_results(path: PathLike, image_ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """Read TAO tracking results: a JSON list (or ``{"annotations": [...]}``) of result dicts, checked.

    ``image_ids``: the ground truth's images; a result on another image raises :class:`DataError`, as does an
    entry without ``image_id`` / ``category_id`` / ``bbox`` / ``score`` / ``track_id``.
    """
    path = Path(path)
    data = _load_json(path, "TAO results")
    if isinstance(data, dict):
        data = data.get("annotations")
    _check_entries(path, "results", data, _RESULT_KEYS)
    if image_ids is not None:
        known = set(image_ids)
        for n, result in enumerate(data):
            if result["image_id"] not in known:
                raise DataError(path, f"results[{n}]: image {result['image_id']} is not in the ground truth")
    return data


def write_tao_results(path: PathLike, results: Iterable[dict[str, Any]]) -> None:
    """Write TAO / COCO-style tracking results (a JSON list of result dicts, see :func:`read_tao_results`);
    the parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(results)), encoding="utf-8")

"""What every reader gives: a sequence of :class:`Video` records with lazily decoded :class:`FrameMasks`.

An image dataset (SA-1B, COCO) is a set of one-frame videos, so samplers, transforms and batches treat images and
videos alike. Object ids are the dataset's own (SA-1B/COCO annotation id, SA-V masklet index, DAVIS palette index).
No torch here.
"""

from __future__ import annotations

import struct
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

try:  # libdeflate inflates label PNGs ~10x faster than zlib; optional, zlib gives the same bytes.
    import deflate as _deflate
except ImportError:  # pragma: no cover - depends on the environment
    _deflate = None

from samlab.errors import DataError
from samlab.masks import RLE, decode_rle, decode_segmentation, rle_is_empty

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_image(path: str | Path) -> np.ndarray:
    """Read an RGB image as ``[H, W, 3]`` uint8.

    Raises :class:`DataError` naming the file when it is missing, truncated (a JPEG without its end marker) or
    not decodable, instead of the silent grey or ``None`` that OpenCV gives.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "frame file is missing") from None
    except OSError as err:
        raise DataError(path, f"cannot read file ({err.strerror})") from None
    if not data:
        raise DataError(path, "file is empty")
    if data[:2] == b"\xff\xd8" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise DataError(path, "truncated JPEG (no end-of-image marker)")
    # Decoding straight to RGB saves a colour-conversion pass per frame.
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR_RGB)
    if image is None:
        raise DataError(path, "not a decodable image")
    return image


def _inflate(data: bytes, size: int) -> bytes | None:
    try:
        if _deflate is not None:
            return _deflate.zlib_decompress(data, size)
        return zlib.decompress(data)
    except (zlib.error, getattr(_deflate, "DeflateError", zlib.error)):
        return None


def decode_label_png(data: bytes) -> np.ndarray | None:
    """``[H, W]`` uint8 values of an 8-bit grey or palette, non-interlaced PNG; None for any other PNG.

    Label PNGs are nearly all of this kind (PIL writes palette PNGs unfiltered); decoding them here skips PIL's
    slower zlib and copies. Rows with the Average or Paeth filter, or anything unexpected, return None and go
    through PIL instead.
    """
    if data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 29:
        return None
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth != 8 or color not in (0, 3) or interlace:
        return None
    chunks = []
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            chunks.append(data[pos + 8 : pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    size = height * (width + 1)
    raw = _inflate(b"".join(chunks), size)
    if raw is None or len(raw) != size:
        return None
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, width + 1)
    filters = rows[:, 0]
    if not filters.any():
        return rows[:, 1:]
    if filters.max() > 2:
        return None
    pixels = rows[:, 1:].copy()
    for y in np.flatnonzero(filters):
        if filters[y] == 1:  # Sub: each byte adds the reconstructed byte on its left.
            pixels[y] = np.cumsum(pixels[y], dtype=np.uint8)
        elif y > 0:  # Up: each byte adds the reconstructed byte above (nothing above the first row).
            pixels[y] += pixels[y - 1]
    return pixels


def read_label_png(path: str | Path) -> np.ndarray:
    """Read a mask PNG as ``[H, W]`` integer labels: palette index for palette PNGs, value for grey PNGs.

    8-bit palette and grey PNGs (nearly all label PNGs) go through :func:`decode_label_png`; the rest through PIL.
    """
    path = Path(path)
    try:
        labels = decode_label_png(path.read_bytes())
    except FileNotFoundError:
        raise DataError(path, "annotation PNG is missing") from None
    except OSError as err:
        raise DataError(path, f"cannot read annotation PNG ({err.strerror})") from None
    if labels is not None:
        return labels
    try:
        with Image.open(path) as image:
            indexed = image.mode in ("P", "L", "I", "I;16", "1")
            labels = np.asarray(image if indexed else image.convert("L"))
    except FileNotFoundError:
        raise DataError(path, "annotation PNG is missing") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(path, f"cannot decode annotation PNG ({err})") from None
    return labels.astype(np.uint8) if labels.dtype == bool else labels


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image file from its header, without decoding pixels."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise DataError(path, "image file is missing") from None
    except OSError as err:
        raise DataError(path, f"not a readable image ({err})") from None
    return height, width


class FrameMasks(ABC):
    """The object masks of one annotated frame, decoded on demand.

    ``size`` is ``(H, W)``; ``source`` is the file the masks come from (for error messages).
    """

    size: tuple[int, int]
    source: str

    @abstractmethod
    def ids(self) -> list[int]:
        """Ids of the objects with a non-empty mask on this frame, in ascending order."""

    @abstractmethod
    def _decode_one(self, object_id: int) -> np.ndarray | None:
        """The ``[H, W]`` bool mask of one object, or None when the object is absent from this frame."""

    def decode(self, object_ids: Sequence[int]) -> np.ndarray:
        """``[len(object_ids), H, W]`` bool masks; an object absent from this frame gives an all-false mask.

        Raises :class:`DataError` naming ``source`` when a decoded mask is not of size ``size``.
        """
        out = np.zeros((len(object_ids), *self.size), dtype=bool)
        for row, object_id in enumerate(object_ids):
            mask = self._decode_one(int(object_id))
            if mask is None:
                continue
            if mask.shape != self.size:
                raise DataError(
                    self.source,
                    f"mask of object {object_id} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its frame is "
                    f"{self.size[1]}x{self.size[0]}",
                )
            out[row] = mask
        return out


class LabelMapMasks(FrameMasks):
    """Masks from one ``[H, W]`` label map (DAVIS/MOSE palette PNG): object id = label value, 0 = background."""

    def __init__(self, labels: np.ndarray, source: str, ignore_label: int | None = 255) -> None:
        self.labels = labels
        self.size = (int(labels.shape[0]), int(labels.shape[1]))
        self.source = source
        self.ignore_label = ignore_label

    def ids(self) -> list[int]:
        values = np.unique(self.labels)
        return [int(v) for v in values if v != 0 and v != self.ignore_label]

    def _decode_one(self, object_id: int) -> np.ndarray | None:
        mask = self.labels == object_id
        return mask if mask.any() else None


class RLEMasks(FrameMasks):
    """Masks given as COCO RLEs (SA-1B, SA-V masklets); empty RLEs mean the object is absent."""

    def __init__(self, rles: dict[int, RLE], size: tuple[int, int], source: str) -> None:
        self.rles = rles
        self.size = size
        self.source = source

    def ids(self) -> list[int]:
        return sorted(i for i, rle in self.rles.items() if not rle_is_empty(rle))

    def _decode_one(self, object_id: int) -> np.ndarray | None:
        rle = self.rles.get(object_id)
        try:
            return None if rle_is_empty(rle) else decode_rle(rle)
        except (ValueError, TypeError, KeyError) as err:
            raise DataError(self.source, f"RLE of object {object_id} is corrupt ({err})") from None


class SegmentationMasks(FrameMasks):
    """COCO ``segmentation`` fields (polygons, RLE or uncompressed RLE) keyed by annotation id."""

    def __init__(self, segmentations: dict[int, RLE | list], size: tuple[int, int], source: str) -> None:
        self.segmentations = segmentations
        self.size = size
        self.source = source
        self._cache: dict[int, np.ndarray] = {}

    def ids(self) -> list[int]:
        return sorted(i for i in self.segmentations if self._decode_one(i) is not None)

    def _decode_one(self, object_id: int) -> np.ndarray | None:
        if object_id not in self.segmentations:
            return None
        if object_id not in self._cache:
            seg = self.segmentations[object_id]
            if isinstance(seg, dict) and [int(v) for v in seg["size"]] != list(self.size):
                raise DataError(
                    self.source,
                    f"annotation {object_id}: RLE size {seg['size']} differs from image size {list(self.size)}",
                )
            self._cache[object_id] = decode_segmentation(seg, *self.size)
        mask = self._cache[object_id]
        return mask if mask.any() else None


class BinaryPNGMasks(FrameMasks):
    """One binary PNG per object (SA-V val/test layout, per-object DAVIS folders); missing file = absent."""

    def __init__(self, paths: dict[int, Path], size: tuple[int, int] | None, source: str) -> None:
        self.paths = paths
        self.source = source
        self._cache: dict[int, np.ndarray] = {}
        if size is None:
            first = next(iter(paths.values()), None)
            size = image_size(first) if first is not None else (0, 0)
        self.size = size

    def ids(self) -> list[int]:
        return sorted(i for i in self.paths if self._decode_one(i) is not None)

    def _decode_one(self, object_id: int) -> np.ndarray | None:
        path = self.paths.get(object_id)
        if path is None:
            return None
        if object_id not in self._cache:
            mask = read_label_png(path) > 0
            if mask.shape != self.size:
                raise DataError(
                    path,
                    f"mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but its frame is {self.size[1]}x{self.size[0]}",
                )
            self._cache[object_id] = mask
        mask = self._cache[object_id]
        return mask if mask.any() else None


class Video(ABC):
    """One annotated sequence (a video, or an image as a one-frame video).

    Frames are addressed by position ``k`` among the *annotated* frames (``0 <= k < num_frames``);
    ``frame_index(k)`` is the frame's number in the original video (SA-V annotates every 4th frame).
    """

    name: str
    source: str

    @property
    @abstractmethod
    def num_frames(self) -> int:
        """Number of annotated frames."""

    @abstractmethod
    def frame_path(self, k: int) -> Path:
        """Image file of annotated frame ``k``."""

    @abstractmethod
    def frame_index(self, k: int) -> int:
        """Original frame number of annotated frame ``k``."""

    @abstractmethod
    def masks(self, k: int) -> FrameMasks:
        """Object masks of annotated frame ``k`` (lazy)."""

    def read_frame(self, k: int) -> np.ndarray:
        """``[H, W, 3]`` uint8 RGB pixels of annotated frame ``k``."""
        return read_image(self.frame_path(k))

    @property
    def total_frames(self) -> int:
        """All frames on disk, annotated or not (for statistics)."""
        return self.num_frames

    def labels(self) -> dict[int, int]:
        """Category id of each object id (COCO); empty when the format has no categories."""
        return {}


class ImageVideo(Video):
    """An image as a one-frame :class:`Video` (SA-1B, COCO): subclasses set ``name``, ``image_path``, ``source``
    and ``kind`` (the format's name for error messages) and implement :meth:`masks`."""

    image_path: Path
    kind: str = "image"

    @property
    def num_frames(self) -> int:
        return 1

    def _check_k(self, k: int) -> None:
        if k != 0:
            raise IndexError(f"{self.kind} '{self.name}' has one frame, asked for frame {k}")

    def frame_path(self, k: int) -> Path:
        self._check_k(k)
        return self.image_path

    def frame_index(self, k: int) -> int:
        self._check_k(k)
        return 0


@dataclass
class Problem:
    """One problem that ``samlab data check`` found: the file and what is wrong with it.

    ``warning``: suspicious but readable (a frame without annotation inside a video's annotated range); printed
    with a ``warning:`` prefix and not counted as an error.
    """

    path: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"{'warning: ' if self.warning else ''}{self.path}: {self.message}"


class VideoReader(Sequence[Video]):
    """Base of every reader: an indexable, sized collection of :class:`Video`, built without decoding anything.

    Readers take ``strict``: when True, a problem found while indexing (a folder without frames, a JSON without
    its image) raises :class:`DataError`; when False it is appended to ``problems`` and the bad item left out
    (``samlab data check`` uses that to list every problem).
    """

    root: Path
    strict: bool = True
    problems: list[Problem]

    def _report(self, path: str | Path, message: str) -> None:
        """Raise (strict) or record (non-strict) an indexing problem of ``path``."""
        if self.strict:
            raise DataError(path, message)
        self.problems.append(Problem(str(path), message))

    def __iter__(self) -> Iterator[Video]:
        for i in range(len(self)):
            yield self[i]

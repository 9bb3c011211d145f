"""Synthetic datasets in the exact on-disk layouts of MOSE, SA-V, SA-1B and COCO, with known ground truth.

Each video is a textured background (smooth noise plus a gradient, different per video) with textured shapes
(ellipses and polygons, each with its own colour pattern) moving with their own velocities and spins. Objects are
stacked in z-order, so the ground-truth masks are the visible parts. Every object is visible on the first frame;
in videos of 8 or more frames the first object (drawn on top) leaves the frame and comes back. Everything is
deterministic given ``seed``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np
from PIL import Image

from samlab.masks import decode_segmentation, encode_rle, mask_to_box, rle_area

SynthFormat = Literal["mose", "sav", "sa1b", "coco"]

# SA-V: 24 fps frames, masklets at 6 fps.
_SAV_FPS = 24
_SAV_ANN_EVERY = 4
_JPEG_QUALITY = 95
# The exit-and-return trajectory needs enough frames to show the object gone and back.
_MIN_FRAMES_FOR_EXIT = 8
_SHAPE_KINDS = ("ellipse", "polygon")
_COCO_CATEGORIES = [
    {"id": 1, "name": "ellipse", "supercategory": "shape"},
    {"id": 2, "name": "polygon", "supercategory": "shape"},
]


def davis_palette() -> list[int]:
    """The 256-colour DAVIS/PASCAL VOC palette as a flat ``[r0, g0, b0, r1, ...]`` list (index 1 is dark red)."""
    palette = []
    for index in range(256):
        rgb = [0, 0, 0]
        value = index
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << (7 - bit)
            value >>= 3
        palette.extend(rgb)
    return palette


@dataclass
class _Shape:
    kind: str
    outline: np.ndarray  # [P, 2] float vertices around (0, 0), in pixels
    extent: float  # largest vertex distance from the centre
    waypoints_u: np.ndarray  # times in [0, 1]
    waypoints_xy: np.ndarray | None  # [N, 2] centres at those times, or None for reflected linear motion
    start: np.ndarray  # [2] centre at u = 0
    velocity: np.ndarray  # [2] pixels per unit time
    spin: float  # radians per unit time
    colours: np.ndarray  # [2, 3] float colours of the stripe pattern
    frequency: float  # stripes per pixel
    stripe_angle: float

    def centre(self, u: float, width: int, height: int) -> np.ndarray:
        if self.waypoints_xy is not None:
            return np.array([np.interp(u, self.waypoints_u, self.waypoints_xy[:, i]) for i in range(2)])
        # Reflect off the frame borders so that these objects stay in view.
        position = self.start + self.velocity * u
        bounds = np.array([width, height], dtype=float)
        period = 2 * bounds
        folded = np.mod(position, period)
        return np.where(folded > bounds, period - folded, folded)


class _Scene:
    """One synthetic video: background and shapes; :meth:`render` draws it at time ``u`` in ``[0, 1]``."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], objects: int, exit_and_return: bool) -> None:
        self.height, self.width = size
        self.background = self._background(rng)
        cols = max(1, math.ceil(math.sqrt(objects * self.width / self.height)))
        rows = math.ceil(objects / cols)
        cell_w, cell_h = self.width / cols, self.height / rows
        cells = rng.permutation(rows * cols)[:objects]
        self.shapes = []
        for i, cell in enumerate(cells):
            # Shapes fit in their grid cell at u = 0, so no object is hidden on the first frame.
            radius = 0.42 * min(cell_w, cell_h) * rng.uniform(0.75, 1.0)
            start = np.array([(cell % cols + 0.5) * cell_w, (cell // cols + 0.5) * cell_h])
            self.shapes.append(self._shape(rng, _SHAPE_KINDS[i % 2], max(radius, 1.5), start))
        if exit_and_return and self.shapes:
            leaver = self.shapes[0]
            out_x = self.width + 1.5 * leaver.extent + 2
            back = leaver.start + np.array([0.0, 0.1 * self.height * rng.uniform(-1, 1)])
            leaver.waypoints_u = np.array([0.0, 0.35, 0.65, 1.0])
            leaver.waypoints_xy = np.array([leaver.start, [out_x, leaver.start[1]], [out_x, back[1]], back])

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        coarse = rng.uniform(0, 1, size=(6, 8, 3)).astype(np.float32)
        noise = cv2.resize(coarse, (self.width, self.height), interpolation=cv2.INTER_CUBIC)
        fine = rng.uniform(0, 1, size=(max(2, self.height // 8), max(2, self.width // 8), 3)).astype(np.float32)
        noise += 0.3 * cv2.resize(fine, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0 : self.height, 0 : self.width].astype(np.float32)
        gradient = (xs * np.cos(angle) + ys * np.sin(angle)) / max(self.width, self.height)
        tint = rng.uniform(0.3, 1.0, size=3).astype(np.float32)
        image = (noise / 1.3 + gradient[..., None]) * tint * 120 + 50
        return np.clip(image, 0, 255).astype(np.uint8)

    def _shape(self, rng: np.random.Generator, kind: str, radius: float, start: np.ndarray) -> _Shape:
        if kind == "ellipse":
            angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
            axes = radius * np.array([1.0, rng.uniform(0.5, 0.9)])
            outline = np.stack([axes[0] * np.cos(angles), axes[1] * np.sin(angles)], axis=1)
        else:
            count = int(rng.integers(5, 9))
            angles = np.sort(rng.uniform(0, 2 * np.pi, size=count))
            radii = radius * rng.uniform(0.55, 1.0, size=count)
            outline = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        direction = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(0.3, 0.6) * min(self.width, self.height)
        return _Shape(
            kind=kind,
            outline=outline,
            extent=float(np.linalg.norm(outline, axis=1).max()),
            waypoints_u=np.zeros(0),
            waypoints_xy=None,
            start=start,
            velocity=speed * np.array([np.cos(direction), np.sin(direction)]),
            spin=rng.uniform(-np.pi, np.pi),
            colours=rng.uniform(0, 255, size=(2, 3)),
            frequency=rng.uniform(0.08, 0.25) * 16 / max(8.0, radius),
            stripe_angle=rng.uniform(0, np.pi),
        )

    def render(self, u: float) -> tuple[np.ndarray, np.ndarray]:
        """``[H, W, 3]`` uint8 RGB frame and ``[O, H, W]`` bool visible masks (in object order) at time ``u``."""
        image = self.background.copy()
        full = np.zeros((len(self.shapes), self.height, self.width), dtype=bool)
        canvas = np.zeros((self.height, self.width), dtype=np.uint8)
        # Object 0 is drawn last: it is on top, so its exit and return are never hidden by the others.
        for index in range(len(self.shapes) - 1, -1, -1):
            shape = self.shapes[index]
            centre = shape.centre(u, self.width, self.height)
            turn = shape.spin * u
            rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
            vertices = shape.outline @ rotation.T + centre
            canvas[:] = 0
            cv2.fillPoly(canvas, [np.round(vertices * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
            mask = canvas.astype(bool)
            full[index] = mask
            if not mask.any():
                continue
            x0, y0, x1, y1 = (int(v) for v in mask_to_box(mask))
            ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            phase = (xs - centre[0]) * np.cos(shape.stripe_angle + turn) + (ys - centre[1]) * np.sin(
                shape.stripe_angle + turn
            )
            weight = (0.5 + 0.5 * np.sin(2 * np.pi * shape.frequency * phase))[..., None]
            texture = shape.colours[0] * (1 - weight) + shape.colours[1] * weight
            region = mask[y0:y1, x0:x1]
            image[y0:y1, x0:x1][region] = texture[region].astype(np.uint8)
        visible = np.zeros_like(full)
        covered = np.zeros((self.height, self.width), dtype=bool)
        for index in range(len(self.shapes)):
            visible[index] = full[index] & ~covered
            covered |= full[index]
        return image, visible


def _write_jpeg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])


def _write_png(path: Path, values: np.ndarray, palette: list[int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = values.shape
    image = Image.frombytes("P" if palette else "L", (width, height), values.astype(np.uint8).tobytes())
    if palette:
        image.putpalette(palette)
    image.save(path, compress_level=1)


def _xywh(mask: np.ndarray) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in mask_to_box(mask))
    return [x0, y0, x1 - x0, y1 - y0]


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (``counts`` a list, column-major, starting with a background run) of an [H, W] mask."""
    flat = mask.astype(np.uint8).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _summary() -> dict:
    return {"items": 0, "frames": 0, "annotated_frames": 0, "objects": 0, "masks": 0, "sparsely_annotated": []}


def _scene(seed: int, index: int, size: tuple[int, int], objects: int, frames: int) -> _Scene:
    rng = np.random.default_rng([seed, index])
    return _Scene(rng, size, objects, exit_and_return=frames >= _MIN_FRAMES_FOR_EXIT)


def _times(count: int) -> list[float]:
    return [t / (count - 1) if count > 1 else 0.0 for t in range(count)]


def _add_video(summary: dict, name: str, frame_files: int, masks: list[np.ndarray]) -> None:
    """Count one video: ``masks`` are its ``[O, H, W]`` visible masks on each annotated frame."""
    present = np.array([m.any(axis=(1, 2)) for m in masks])
    if frame_files > len(masks):
        summary["sparsely_annotated"].append(name)
    summary["items"] += 1
    summary["frames"] += frame_files
    summary["annotated_frames"] += len(masks)
    summary["objects"] += int(present.any(axis=0).sum())
    summary["masks"] += int(present.sum())


def _write_mose(out: Path, videos: int, frames: int, size: tuple[int, int], seed: int, objects: int) -> dict:
    summary = _summary()
    palette = davis_palette()
    for v in range(videos):
        name = f"synth_{v:04d}"
        scene = _scene(seed, v, size, objects, frames)
        all_masks = []
        for t, u in enumerate(_times(frames)):
            image, masks = scene.render(u)
            labels = np.zeros(size, dtype=np.uint8)
            for index, mask in enumerate(masks):
                labels[mask] = index + 1
            _write_jpeg(out / "JPEGImages" / name / f"{t:05d}.jpg", image)
            _write_png(out / "Annotations" / name / f"{t:05d}.png", labels, palette)
            all_masks.append(masks)
        _add_video(summary, name, frames, all_masks)
    return summary


def _sav_json(
    name: str, total_frames: int, size: tuple[int, int], masks: list[np.ndarray], rng: np.random.Generator
) -> dict:
    height, width = size
    present = np.array([m.any(axis=(1, 2)) for m in masks])  # [T, O]
    areas = np.array([m.sum(axis=(1, 2)) for m in masks], dtype=float)  # [T, O]
    num = present.shape[1]
    first = [int(np.argmax(present[:, o])) for o in range(num)]
    size_abs = [float(areas[present[:, o], o].mean()) if present[:, o].any() else 0.0 for o in range(num)]
    return {
        "video_id": name,
        "video_duration": total_frames / _SAV_FPS,
        "video_frame_count": float(total_frames),
        "video_height": float(height),
        "video_width": float(width),
        "video_resolution": float(height * width),
        "video_environment": str(rng.choice(["Indoor", "Outdoor"])),
        "video_split": "train",
        "masklet": [[encode_rle(mask) for mask in frame] for frame in masks],
        "masklet_id": list(range(num)),
        "masklet_size_rel": [a / (height * width) for a in size_abs],
        "masklet_size_abs": size_abs,
        # COCO's small/medium/large thresholds, as SA-V uses them.
        "masklet_size_bucket": ["small" if a < 32**2 else "medium" if a < 96**2 else "large" for a in size_abs],
        # SA-V counts visibility changes from the masklet's first appearance on.
        "masklet_visibility_changes": [
            int((np.diff(present[first[o] :, o].astype(int)) != 0).sum()) for o in range(num)
        ],
        "masklet_first_appeared_frame": [float(f) for f in first],
        "masklet_frame_count": [len(masks)] * num,
        "masklet_edited_frame_count": [int(present[:, o].sum()) for o in range(num)],
        "masklet_type": ["manual"] * num,
        "masklet_stability_score": [None] * num,
        "masklet_num": num,
    }


def _video_encoder(container: av.container.OutputContainer, size: tuple[int, int]) -> av.VideoStream:
    try:
        av.codec.Codec("libx264", "w")
        stream = container.add_stream("libx264", rate=_SAV_FPS)
        stream.options = {"crf": "12", "preset": "veryfast"}
    except av.FFmpegError:
        stream = container.add_stream("mpeg4", rate=_SAV_FPS)
        stream.options = {"qscale": "2"}
    stream.height, stream.width = size
    stream.pix_fmt = "yuv420p"
    return stream


def _write_sav(
    out: Path, videos: int, frames: int, size: tuple[int, int], seed: int, objects: int, layout: str
) -> dict:
    if layout == "train" and (size[0] % 2 or size[1] % 2):
        raise ValueError(f"SA-V train videos are H.264/MPEG-4 with 4:2:0 chroma: size must be even, got {size}")
    summary = _summary()
    total = (frames - 1) * _SAV_ANN_EVERY + 1
    for v in range(videos):
        name = f"sav_{v + 1:06d}"
        scene = _scene(seed, v, size, objects, frames)
        frame_dir = out / name if layout == "train" else out / "JPEGImages_24fps" / name
        frame_dir.mkdir(parents=True, exist_ok=True)
        annotated = []
        container = av.open(str(out / f"{name}.mp4"), mode="w") if layout == "train" else None
        stream = _video_encoder(container, size) if container is not None else None
        for f, u in enumerate(_times(total)):
            image, masks = scene.render(u)
            _write_jpeg(frame_dir / f"{f:05d}.jpg", image)
            if stream is not None:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            if f % _SAV_ANN_EVERY:
                continue
            annotated.append(masks)
            if layout != "train":
                for index, mask in enumerate(masks):
                    png = out / "Annotations_6fps" / name / f"{index:03d}" / f"{f:05d}.png"
                    _write_png(png, mask.astype(np.uint8) * 255)
        if container is not None:
            container.mux(stream.encode(None))
            container.close()
            sav_json = _sav_json(name, total, size, annotated, np.random.default_rng([seed, v, 1]))
            (out / f"{name}_manual.json").write_text(json.dumps(sav_json))
        _add_video(summary, name, total, annotated)
    return summary


def _write_sa1b(out: Path, images: int, size: tuple[int, int], seed: int, objects: int) -> dict:
    summary = _summary()
    height, width = size
    out.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        number = i + 1
        image, masks = _scene(seed, i, size, objects, 1).render(0.0)
        masks = list(masks)
        # Part/whole overlap as in SA-1B: one mask covers the union of two objects.
        if i % 2 == 0 and len(masks) >= 2:
            masks.append(masks[0] | masks[1])
        rng = np.random.default_rng([seed, i, 2])
        annotations = []
        for j, mask in enumerate(masks):
            ys, xs = np.nonzero(mask)
            pick = int(rng.integers(len(xs)))
            annotations.append(
                {
                    "id": number * 1000 + j,
                    "segmentation": encode_rle(mask),
                    "bbox": _xywh(mask),
                    "area": int(mask.sum()),
                    "predicted_iou": float(rng.uniform(0.85, 1.0)),
                    "stability_score": float(rng.uniform(0.9, 1.0)),
                    "point_coords": [[float(xs[pick]) + 0.5, float(ys[pick]) + 0.5]],
                    "crop_box": [0.0, 0.0, float(width), float(height)],
                }
            )
        record = {
            "image": {"image_id": number, "width": width, "height": height, "file_name": f"sa_{number}.jpg"},
            "annotations": annotations,
        }
        _write_jpeg(out / f"sa_{number}.jpg", image)
        (out / f"sa_{number}.json").write_text(json.dumps(record))
        summary["items"] += 1
        summary["frames"] += 1
        summary["annotated_frames"] += 1
        summary["objects"] += len(annotations)
        summary["masks"] += len(annotations)
    return summary


def _polygons(mask: np.ndarray) -> list[list[float]]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def _write_coco(out: Path, images: int, size: tuple[int, int], seed: int, objects: int) -> dict:
    summary = _summary()
    height, width = size
    records, annotations = [], []
    for i in range(images):
        name = f"synth_{i:04d}.jpg"
        scene = _scene(seed, i, size, objects, 1)
        image, masks = scene.render(0.0)
        _write_jpeg(out / "images" / name, image)
        records.append({"id": i + 1, "file_name": name, "width": width, "height": height})
        for j, mask in enumerate(masks):
            crowd = j == len(masks) - 1 and len(masks) >= 2
            polygons = [] if crowd or (j == 1 and i % 2 == 1) else _polygons(mask)
            written = decode_segmentation(polygons, height, width) if polygons else mask
            if crowd:
                segmentation = _uncompressed_rle(mask)
            elif polygons and written.any():
                segmentation = polygons
            else:
                # Objects whose outline is too thin for a polygon are stored as RLE, like COCO's own.
                segmentation, written = encode_rle(mask), mask
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": 1 + _SHAPE_KINDS.index(scene.shapes[j].kind),
                    "segmentation": segmentation,
                    "area": float(rle_area(encode_rle(written))),
                    "bbox": _xywh(written),
                    "iscrowd": int(crowd),
                }
            )
            # Crowd regions are not objects (COCO's evaluation and samlab's COCO reader leave them out).
            summary["objects"] += int(not crowd)
            summary["masks"] += int(not crowd)
        summary["items"] += 1
        summary["frames"] += 1
        summary["annotated_frames"] += 1
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    instances = {"images": records, "annotations": annotations, "categories": _COCO_CATEGORIES}
    (out / "annotations" / "instances.json").write_text(json.dumps(instances))
    return summary


def synthesize(
    format: SynthFormat,
    out: str | Path,
    videos: int = 2,
    frames: int = 8,
    size: tuple[int, int] = (96, 128),
    seed: int = 0,
    objects: int = 3,
    layout: Literal["train", "val"] = "train",
) -> dict:
    """Write a small synthetic dataset in ``format``'s on-disk layout under ``out`` and return its ground truth.

    ``format``: ``"mose"`` (DAVIS layout, palette PNGs), ``"sav"`` (``layout="train"``: ``<vid>.mp4``, its frames
    and ``<vid>_manual.json``; ``layout="val"``: ``JPEGImages_24fps`` + ``Annotations_6fps``), ``"sa1b"`` or
    ``"coco"``. ``videos``: number of videos (images for SA-1B/COCO); ``frames``: annotated frames per video (SA-V
    writes ``(frames - 1) * 4 + 1`` frames and annotates every 4th); ``size``: ``(H, W)``; ``objects``: shapes
    per video or image.

    Returns ``{"items", "frames", "annotated_frames", "objects", "masks", "sparsely_annotated"}``: videos or
    images, frame files, annotated frames, distinct objects (masklets, annotations; COCO ``iscrowd`` regions
    excluded), non-empty masks, and the names of the videos with frames left unannotated (SA-V's every 4th frame).
    """
    if videos < 1 or frames < 1 or objects < 1:
        raise ValueError(f"videos, frames and objects must be >= 1, got {videos}, {frames}, {objects}")
    if layout not in ("train", "val"):
        raise ValueError(f"layout must be 'train' or 'val', got {layout!r}")
    if layout != "train" and format != "sav":
        raise ValueError(f"layout={layout!r} applies to format 'sav' only")
    size = (int(size[0]), int(size[1]))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if format == "mose":
        return _write_mose(out, videos, frames, size, seed, objects)
    if format == "sav":
        return _write_sav(out, videos, frames, size, seed, objects, layout)
    if format == "sa1b":
        return _write_sa1b(out, videos, size, seed, objects)
    if format == "coco":
        return _write_coco(out, videos, size, seed, objects)
    raise ValueError(f"unknown format {format!r}: expected 'mose', 'sav', 'sa1b' or 'coco'")

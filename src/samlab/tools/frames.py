"""Frame extraction for SA-V: ``<video_dir>/**/<video>.mp4`` to ``<out>/<video>/00000.jpg ...`` (every frame).

This is the layout :class:`samlab.data.formats.sav.SAVReader` reads and the one SA-V's own ffmpeg script writes
(frames numbered from 0). Each video is decoded into a hidden temporary folder that is renamed when complete, so an
interrupted run never leaves a frame folder that looks complete.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import cv2

from samlab.data.formats.davis import list_frame_files
from samlab.errors import DataError
from samlab.progress import track


def _header_frame_count(path: Path) -> int:
    """Frame count stored in the container header (0 when the muxer did not store one)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(path, "has no video stream")
            return int(container.streams.video[0].frames)
    except av.FFmpegError as err:
        raise DataError(path, f"cannot open video ({err})") from None


def _decode_to(path: Path, folder: Path, quality: int) -> int:
    count = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(path, "has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                image = frame.to_ndarray(format="bgr24")
                target = folder / f"{count:05d}.jpg"
                if not cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
                    raise DataError(target, "cannot write frame")
                count += 1
    except av.FFmpegError as err:
        raise DataError(path, f"cannot decode video after {count} frames ({err})") from None
    if count == 0:
        raise DataError(path, "no frame could be decoded")
    return count


def extract_frames(
    video_dir: str | Path, out: str | Path, quality: int = 95, overwrite: bool = False, progress: bool = False
) -> dict[str, int]:
    """Decode every ``.mp4`` under ``video_dir`` (recursively) to JPEG frames ``out/<video>/%05d.jpg``.

    ``quality``: JPEG quality 1-100. A video whose frame folder already holds as many frames as its header
    announces (or, when the header has no count, any frames) is skipped unless ``overwrite``. A video that cannot
    be opened or decoded raises :class:`DataError` naming it; so do two videos with the same name.

    Returns ``{"videos", "frames", "skipped"}``: videos found, frames in their folders after the run, and videos
    left as they were. ``progress`` shows a progress bar (videos) on standard error.
    """
    video_dir, out = Path(video_dir), Path(out)
    if not video_dir.is_dir():
        raise DataError(video_dir, "video folder is missing")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    videos: dict[str, Path] = {}
    for path in sorted(video_dir.rglob("*.mp4")):
        if path.stem in videos:
            raise DataError(path, f"another video has the same name: {videos[path.stem]}")
        videos[path.stem] = path
    out.mkdir(parents=True, exist_ok=True)
    summary = {"videos": len(videos), "frames": 0, "skipped": 0}
    for name, path in track(videos.items(), "extract frames", len(videos), "video", enabled=progress):
        folder = out / name
        expected = _header_frame_count(path)
        on_disk = len(list_frame_files(folder))
        if not overwrite and on_disk > 0 and (expected == 0 or on_disk == expected):
            summary["skipped"] += 1
            summary["frames"] += on_disk
            continue
        partial = out / f".{name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        try:
            summary["frames"] += _decode_to(path, partial, quality)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return summary
